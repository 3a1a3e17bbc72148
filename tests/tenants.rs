//! The tenant control plane as an operator and a tenant's admin meet it
//! (`/api/v1/tenants`): tenants created and changed while the platform runs,
//! each change a new version (`ETag`, `If-Match`, history, rollback),
//! suspension, and every bad document refused with its path and nothing
//! written. Natively, in wasm and in wasm on Redis; the whole message loop
//! over a changed tenant runs under the real Spin in tests/on_spin.rs.

use e2e_tests::{Call, Console, OPERATOR, Target, assert_problem, operator, token};
use greentic::flows::control::TenantDocument;
use greentic::http::Response;
use greentic::testing::demo_bundle;
use serde_json::{Value, json};

e2e_tests::on_every_target!(
    an_operator_creates_a_tenant_and_lists_it,
    every_change_is_a_version_made_from_the_current_one,
    bad_documents_are_400_with_their_paths_and_change_nothing,
    a_version_over_the_size_limit_is_413_and_changes_nothing,
    suspension_stops_a_tenants_traffic_and_api_until_it_is_resumed,
    if_match_takes_an_etag_or_a_star_and_a_weak_tag_never_matches,
    a_tenants_admin_cannot_raise_its_own_limits,
    a_platform_admin_resumes_even_its_own_suspended_tenant,
);

/// The demo's acme as a document, renamed to `id` (and given `name`).
fn document(name: &str) -> TenantDocument {
    let mut document = TenantDocument::from_bundle(demo_bundle(), "acme").unwrap();
    document.tenant.name = name.to_owned();
    document
}

fn put(
    console: &Console,
    call: &Call,
    tenant: &str,
    body: &[u8],
    if_match: Option<u64>,
) -> Response {
    let mut req = call
        .request("PUT", &format!("/api/v1/tenants/{tenant}"))
        .with_body(body.to_vec());
    if let Some(v) = if_match {
        req = req.with_header("if-match", format!("\"{v}\""));
    }
    console.call(req)
}

fn put_document(
    console: &Console,
    call: &Call,
    tenant: &str,
    document: &TenantDocument,
    if_match: Option<u64>,
) -> Response {
    put(
        console,
        call,
        tenant,
        &serde_json::to_vec(document).unwrap(),
        if_match,
    )
}

fn get(console: &Console, call: &Call, path: &str) -> Response {
    console.call(call.request("GET", path))
}

fn acme_admin() -> Call {
    Call::with(&token("acme", "prod").roles(&["admin"]))
}

fn an_operator_creates_a_tenant_and_lists_it(target: Target) {
    let console = Console::on(target);
    let created = put_document(
        &console,
        &operator(),
        "cyberdyne",
        &document("Cyberdyne"),
        None,
    );
    assert_eq!(created.status, 201, "{}", created.json_body());
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(
        created.header("location"),
        Some("/api/v1/tenants/cyberdyne")
    );
    let body = created.json_body();
    assert_eq!(
        (
            &body["result"],
            &body["version"],
            &body["change"],
            &body["status"],
            &body["author"]
        ),
        (
            &json!("created"),
            &json!(1),
            &json!("created"),
            &json!("active"),
            &json!("user@ops")
        )
    );
    assert_eq!(body["limits"]["api_requests_per_minute"], 1200);

    let shown = get(&console, &operator(), "/api/v1/tenants/cyberdyne");
    assert_eq!(shown.status, 200);
    let shown_document: TenantDocument =
        serde_json::from_value(shown.json_body()["document"].clone()).unwrap();
    assert_eq!(shown_document.tenant.name, "Cyberdyne");
    assert_eq!(
        shown_document.flows.keys().collect::<Vec<_>>(),
        ["acme_support_flow"]
    );

    // Newest first, in pages; the demo's two tenants were applied before.
    let page = get(&console, &operator(), "/api/v1/tenants?limit=2").json_body();
    let ids = e2e_tests::item_fields(&page, "tenant");
    assert_eq!(ids, ["cyberdyne", "bigcorp"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get(
        &console,
        &operator(),
        &format!("/api/v1/tenants?limit=2&cursor={cursor}"),
    )
    .json_body();
    assert_eq!(rest["items"][0]["tenant"], "acme");
    assert_eq!(rest["next_cursor"], Value::Null);

    // Only a platform admin lists or creates.
    assert_problem(
        &get(&console, &acme_admin(), "/api/v1/tenants"),
        403,
        "forbidden",
    );
    let before = console.config().snapshot();
    let refused = put_document(&console, &acme_admin(), "acme2", &document("Mine"), None);
    assert_problem(&refused, 403, "forbidden");
    assert_eq!(console.config().snapshot(), before);
    // Creating an existing tenant without If-Match is an update, not a second tenant.
    assert_eq!(
        put_document(
            &console,
            &operator(),
            "cyberdyne",
            &document("Cyberdyne"),
            None
        )
        .json_body()["result"],
        "unchanged"
    );
}

fn every_change_is_a_version_made_from_the_current_one(target: Target) {
    let console = Console::on(target);
    let original = TenantDocument::from_bundle(demo_bundle(), "acme").unwrap();
    let current = get(&console, &acme_admin(), "/api/v1/tenants/acme");
    assert_eq!(
        (current.status, current.header("etag")),
        (200, Some("\"1\""))
    );

    let renamed = document("ACME Corp.");
    let updated = put_document(&console, &acme_admin(), "acme", &renamed, Some(1));
    assert_eq!(updated.status, 200, "{}", updated.json_body());
    assert_eq!(
        (
            updated.json_body()["result"].as_str(),
            updated.header("etag")
        ),
        (Some("updated"), Some("\"2\""))
    );
    assert_eq!(updated.json_body()["author"], "user@acme");

    // A change made from version 1 lost the race: 412, nothing written.
    let before = console.config().snapshot();
    let stale = put_document(
        &console,
        &acme_admin(),
        "acme",
        &document("Someone else"),
        Some(1),
    );
    assert_problem(&stale, 412, "precondition-failed");
    assert_eq!(console.config().snapshot(), before);
    // The same document again makes no version.
    let same = put_document(&console, &acme_admin(), "acme", &renamed, Some(2));
    assert_eq!(
        (same.status, same.json_body()["result"].as_str()),
        (200, Some("unchanged"))
    );
    assert_eq!(console.config().snapshot(), before);

    let back = console.call(
        acme_admin()
            .request("POST", "/api/v1/tenants/acme/rollback")
            .with_header("if-match", "\"2\"")
            .with_body(json!({ "version": 1 }).to_string()),
    );
    assert_eq!(back.status, 200, "{}", back.json_body());
    assert_eq!(
        (
            back.json_body()["version"].as_u64(),
            back.json_body()["change"].as_str()
        ),
        (Some(3), Some("rolled back to 1"))
    );
    let shown: TenantDocument = serde_json::from_value(
        get(&console, &acme_admin(), "/api/v1/tenants/acme").json_body()["document"].clone(),
    )
    .unwrap();
    assert_eq!(shown, original);

    let history = get(
        &console,
        &acme_admin(),
        "/api/v1/tenants/acme/versions?limit=2",
    )
    .json_body();
    let changes = e2e_tests::item_fields(&history, "change");
    assert_eq!(changes, ["rolled back to 1", "updated"]);
    let older = get(
        &console,
        &acme_admin(),
        &format!(
            "/api/v1/tenants/acme/versions?before={}",
            history["next_before"]
        ),
    )
    .json_body();
    assert_eq!(older["items"][0]["change"], "created");
    let v2 = get(&console, &acme_admin(), "/api/v1/tenants/acme/versions/2").json_body();
    assert_eq!(v2["document"]["tenant"]["name"], "ACME Corp.");
    assert_problem(
        &get(&console, &acme_admin(), "/api/v1/tenants/acme/versions/9"),
        404,
        "not-found",
    );
    let missing = console.call(
        acme_admin()
            .request("POST", "/api/v1/tenants/acme/rollback")
            .with_body(json!({ "version": 9 }).to_string()),
    );
    assert_problem(&missing, 404, "not-found");
}

fn bad_documents_are_400_with_their_paths_and_change_nothing(target: Target) {
    let console = Console::on(target);
    let valid = serde_json::to_value(document("ACME")).unwrap();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut doc = valid.clone();
        change(&mut doc);
        serde_json::to_vec(&doc).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"tenant: [unclosed".to_vec(), "document: line 1"),
        (
            with(&|d| d["colour"] = json!("red")),
            "unknown field `colour`",
        ),
        (
            with(&|d| {
                d["tenant"]["teams"]["support"]["channels"]["slack"]["config"]["bot_token"] =
                    json!("xoxb-1")
            }),
            "document: tenant.teams.support.channels.slack.config.bot_token: looks like a secret; store it with `greentic secret put`, not in the configuration",
        ),
        (
            with(&|d| d["tenant"]["limits"] = json!({ "api_requests_per_minute": 0 })),
            "document: tenant.limits.api_requests_per_minute: a limit of 0 would refuse everything",
        ),
        (
            with(&|d| d["flows"] = json!({})),
            "document: tenant.flow: flow `acme_support_flow` is not in the document's `flows`",
        ),
        (
            with(&|d| d["flows"]["acme_support_flow"]["nodes"][0]["next"] = json!("nowhere")),
            "document: flows.acme_support_flow.nodes[0].next: no node has id `nowhere`",
        ),
        (
            with(&|d| {
                d["tenant"]["teams"]["support"]["channels"]["slack"]["provider"] =
                    json!("messaging-fax")
            }),
            "document: tenant.teams.support.channels.slack.provider: unknown provider",
        ),
    ];
    let writes = console.config().writes();
    let before = console.config().snapshot();
    for (body, expected) in cases {
        for tenant in ["acme", "newco"] {
            let r = put(&console, &operator(), tenant, &body, None);
            assert_problem(&r, 400, "invalid-document");
            let errors = r.json_body()["errors"].clone();
            assert!(
                errors
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().contains(expected)),
                "{tenant}: expected {expected:?} in {errors:#}"
            );
        }
    }
    assert_eq!(console.config().snapshot(), before);
    assert_eq!(
        console.config().writes(),
        writes,
        "a refused document writes nothing"
    );
}

fn a_version_over_the_size_limit_is_413_and_changes_nothing(target: Target) {
    let console = Console::on(target);
    let mut big = document("ACME");
    let flow = big.flows.get_mut("acme_support_flow").unwrap();
    flow.description = Some("x".repeat(greentic::store::config::MAX_VERSION_BYTES));
    let before = console.config().snapshot();
    let r = put_document(&console, &operator(), "acme", &big, None);
    assert_problem(&r, 413, "payload-too-large");
    assert_eq!(console.config().snapshot(), before);
}

fn suspension_stops_a_tenants_traffic_and_api_until_it_is_resumed(target: Target) {
    let console = Console::on(target);
    let set_status = |call: &Call, status: &str| {
        console.call(
            call.request("PUT", "/api/v1/tenants/acme/status")
                .with_body(json!({ "status": status }).to_string()),
        )
    };
    let unverified = {
        let r = console.call(
            greentic::http::Request::new("POST", "/webhooks/prod/acme/support/telegram")
                .with_body("{}"),
        );
        (r.status, r.json_body()["type"].clone())
    };
    // A tenant's own admin cannot suspend or resume it.
    assert_problem(&set_status(&acme_admin(), "suspended"), 403, "forbidden");
    let suspended = set_status(&operator(), "suspended");
    assert_eq!(suspended.status, 200, "{}", suspended.json_body());
    assert_eq!(
        (
            suspended.json_body()["change"].as_str(),
            suspended.json_body()["status"].as_str()
        ),
        (Some("suspended"), Some("suspended"))
    );

    let sessions = |tenant: &str| {
        get(
            &console,
            &Call::with(&token(tenant, "prod")),
            "/api/v1/sessions",
        )
    };
    let webhook = |tenant: &str, team: &str, channel: &str| {
        let r = console.call(
            greentic::http::Request::new(
                "POST",
                &format!("/webhooks/prod/{tenant}/{team}/{channel}"),
            )
            .with_body("{}"),
        );
        (r.status, r.json_body()["type"].clone())
    };
    assert_problem(&sessions("acme"), 403, "tenant-suspended");
    assert_problem(
        &get(&console, &acme_admin(), "/api/v1/tenants/acme"),
        403,
        "tenant-suspended",
    );
    assert_problem(
        &get(&console, &acme_admin(), "/api/v1/export"),
        403,
        "tenant-suspended",
    );
    // A webhook the provider's verification would refuse gets the answer
    // it got before: nobody unverified learns the tenant is suspended (a
    // verified one gets 403 tenant-suspended: tests/on_spin.rs).
    assert_eq!(webhook("acme", "support", "telegram"), unverified);
    // Nobody else is touched; the operator still sees the tenant.
    assert_eq!(sessions("bigcorp").status, 200);
    assert_eq!(
        webhook("bigcorp", "helpdesk", "webchat").0,
        401,
        "bigcorp's web chat still asks for its token"
    );
    assert_eq!(
        get(&console, &operator(), "/api/v1/tenants/acme").json_body()["status"],
        "suspended"
    );

    let resumed = set_status(&operator(), "active");
    assert_eq!(resumed.json_body()["change"], "resumed");
    assert_eq!(sessions("acme").status, 200);
    assert_eq!(webhook("acme", "support", "telegram"), unverified);
    assert_problem(&set_status(&operator(), "paused"), 400, "bad-request");
    assert_problem(
        &console.call(
            operator()
                .request("PUT", "/api/v1/tenants/nobody/status")
                .with_body(json!({ "status": "active" }).to_string()),
        ),
        404,
        "not-found",
    );
    // Each change is logged once, in the operator's scope, naming the tenant changed.
    let changes: Vec<Value> = console
        .logs()
        .into_iter()
        .filter(|l| l["event"] == "tenant_config")
        .collect();
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert!(
        changes
            .iter()
            .all(|l| l["tenant"] == OPERATOR && l["config_tenant"] == "acme"),
        "{changes:#?}"
    );
}

/// The hybrid model: an enterprise tenant applied to a dedicated instance
/// only. Its webhooks sent to the shared instance find nothing (the same
/// bare 404 as any unknown channel) and leave nothing in the shared stores,
/// while the dedicated instance knows it.
#[test]
fn a_tenant_of_a_dedicated_instance_is_unknown_to_the_shared_one() {
    let shared = Console::on(Target::Native);
    let dedicated = Console::on(Target::Native);
    let mut enterprise = document("Enterprise Inc.");
    enterprise.tenant.teams.retain(|team, _| team == "support");
    let created = put_document(&dedicated, &operator(), "enterprise", &enterprise, None);
    assert_eq!(created.status, 201, "{}", created.json_body());

    let before = shared.config().snapshot();
    let webhook = |console: &Console| {
        console.call(
            greentic::http::Request::new("POST", "/webhooks/prod/enterprise/support/telegram")
                .with_body("{}"),
        )
    };
    let refused = webhook(&shared);
    assert_problem(&refused, 404, "not-found");
    assert_eq!(refused.json_body()["detail"], "not found");
    assert_eq!(shared.config().snapshot(), before);
    assert_problem(
        &get(&shared, &operator(), "/api/v1/tenants/enterprise"),
        404,
        "not-found",
    );
    // The dedicated instance knows the channel: it goes on to verify the
    // request (which has no Telegram secret token header).
    assert_problem(&webhook(&dedicated), 401, "unauthorized");
}

fn if_match_takes_an_etag_or_a_star_and_a_weak_tag_never_matches(target: Target) {
    let console = Console::on(target);
    let body = serde_json::to_vec(&document("ACME Corp.")).unwrap();
    let with = |tenant: &str, tag: &str| {
        console.call(
            operator()
                .request("PUT", &format!("/api/v1/tenants/{tenant}"))
                .with_header("if-match", tag)
                .with_body(body.clone()),
        )
    };
    let before = console.config().snapshot();
    assert_problem(&with("acme", "W/\"1\""), 412, "precondition-failed");
    assert_problem(&with("newco", "*"), 412, "precondition-failed");
    for malformed in ["\"1", "one", "\"1\", \"2\""] {
        assert_problem(&with("acme", malformed), 400, "bad-request");
    }
    assert_eq!(console.config().snapshot(), before);
    let r = with("acme", "*");
    assert_eq!(
        (r.status, r.header("etag")),
        (200, Some("\"2\"")),
        "{}",
        r.json_body()
    );
    assert_problem(
        &get(
            &console,
            &operator(),
            "/api/v1/tenants/newco/versions?before=3",
        ),
        404,
        "not-found",
    );
}

fn a_tenants_admin_cannot_raise_its_own_limits(target: Target) {
    let console = Console::on(target);
    let mut raised = TenantDocument::from_bundle(demo_bundle(), "acme").unwrap();
    raised.tenant.limits.api_requests_per_minute = Some(1_000_000);
    let before = console.config().snapshot();
    let r = put_document(&console, &acme_admin(), "acme", &raised, None);
    assert_problem(&r, 403, "forbidden");
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("tenant.limits")
    );
    assert_eq!(console.config().snapshot(), before);
    let r = put_document(&console, &operator(), "acme", &raised, None);
    assert_eq!(
        r.json_body()["limits"]["api_requests_per_minute"],
        1_000_000
    );
}

/// The operator's own tenant suspended (say a single-tenant deployment whose
/// operator is its tenant): its platform admin is still admitted and
/// resumes it; its other tokens are refused meanwhile.
fn a_platform_admin_resumes_even_its_own_suspended_tenant(target: Target) {
    let console = Console::on(target);
    let created = put_document(&console, &operator(), OPERATOR, &document("Operator"), None);
    assert_eq!(created.status, 201, "{}", created.json_body());
    let set_status = |status: &str| {
        console.call(
            operator()
                .request("PUT", &format!("/api/v1/tenants/{OPERATOR}/status"))
                .with_body(json!({ "status": status }).to_string()),
        )
    };
    assert_eq!(set_status("suspended").status, 200);
    let reader = Call::with(&token(OPERATOR, "prod"));
    assert_problem(
        &get(&console, &reader, "/api/v1/sessions"),
        403,
        "tenant-suspended",
    );
    assert_eq!(set_status("active").json_body()["status"], "active");
    assert_eq!(get(&console, &reader, "/api/v1/sessions").status, 200);
}
