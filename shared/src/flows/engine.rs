//! Runs a flow for one incoming message: from where the session waits (or
//! the first node) until the flow asks for input, ends, or runs out of nodes.
//!
//! Pure: the caller loads the session and state, and persists what comes
//! back. So a turn can be re-run after a compare-and-swap conflict with the
//! same result, and tested without any store.

use minijinja::Environment;
use serde_json::{Value, json};

use crate::flows::flow::{Flow, MAX_STEPS, Step, Test};
use crate::flows::template::environment;
use crate::store::session::SessionState;

/// What templates see besides `state`: the message and who the conversation is with.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnInput {
    pub text: String,
    pub sender_id: String,
    pub sender_name: Option<String>,
    pub channel: String,
    pub session_id: String,
    pub message_count: u64,
    pub tenant_id: String,
    pub tenant_name: String,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
}

/// The result of a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Messages to send, in order.
    pub replies: Vec<String>,
    /// The `ask` node now waiting for the next message; `None` when the flow is done.
    pub waiting_at: Option<String>,
    /// An `end` node with `close: true` was reached.
    pub closed: bool,
    pub steps: usize,
    /// The node the session waited at, when the flow no longer has it as an
    /// `ask` (a new version changed it) and the turn started the flow over.
    pub restarted_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("flow `{flow}` took more than {MAX_STEPS} steps in one turn (at node `{node}`)")]
    StepLimit { flow: String, node: String },
    #[error("flow `{flow}` node `{node}`: template failed: {reason}")]
    Template {
        flow: String,
        node: String,
        reason: String,
    },
    #[error("flow `{flow}` has no node `{node}`")]
    MissingNode { flow: String, node: String },
    #[error("flow `{flow}` node `{node}`: {reason}")]
    BadNode {
        flow: String,
        node: String,
        reason: String,
    },
}

/// Runs one turn of `flow` for `input`, resuming at `waiting_at` (an `ask`
/// node) or starting at the first node. `state` is updated in place.
pub fn run_turn(
    flow: &Flow,
    waiting_at: Option<&str>,
    state: &mut SessionState,
    input: &TurnInput,
) -> Result<Turn, FlowError> {
    let env = environment();
    let mut turn = Turn {
        replies: Vec::new(),
        waiting_at: None,
        closed: false,
        steps: 0,
        restarted_from: None,
    };
    let first = flow.nodes.first().map(|n| n.id.clone());
    let mut current = match waiting_at {
        Some(node_id) => answer(flow, &env, node_id, state, input, &mut turn)?,
        None => first,
    };
    while let Some(node_id) = current {
        turn.steps += 1;
        if turn.steps > MAX_STEPS {
            return Err(FlowError::StepLimit {
                flow: flow.name.clone(),
                node: node_id,
            });
        }
        let (node, step) = step_of(flow, &node_id)?;
        current = match step {
            Step::Reply { message } => {
                turn.replies
                    .push(render(&env, flow, &node_id, &message, state, input)?);
                node.next.clone()
            }
            Step::Ask { prompt, .. } => {
                turn.replies
                    .push(render(&env, flow, &node_id, &prompt, state, input)?);
                turn.waiting_at = Some(node_id);
                return Ok(turn);
            }
            Step::Set { key, value } => {
                let value = render(&env, flow, &node_id, &value, state, input)?;
                state.insert(key, Value::String(value));
                node.next.clone()
            }
            Step::Branch { cases, default } => {
                let chosen = cases.iter().find(|case| {
                    let subject = match case.on.strip_prefix("state.") {
                        Some(key) => state_text(state, key),
                        None => input.text.clone(),
                    };
                    matches(&case.test, &subject)
                });
                Some(chosen.map_or(default, |c| c.next.clone()))
            }
            Step::End { close } => {
                turn.closed = close;
                None
            }
        };
    }
    Ok(turn)
}

/// The answer to the `ask` at `node_id`: stored if it fits, otherwise the
/// retry prompt and the same wait. Returns where the flow goes on.
fn answer(
    flow: &Flow,
    env: &Environment<'_>,
    node_id: &str,
    state: &mut SessionState,
    input: &TurnInput,
    turn: &mut Turn,
) -> Result<Option<String>, FlowError> {
    // The flow changed under a waiting session (a new version removed the
    // node, or made it something other than an `ask`): start it over.
    let start_over = |turn: &mut Turn| {
        turn.restarted_from = Some(node_id.to_owned());
        Ok(flow.nodes.first().map(|n| n.id.clone()))
    };
    if flow.node(node_id).is_none() {
        return start_over(turn);
    }
    let (node, step) = step_of(flow, node_id)?;
    let Step::Ask {
        prompt,
        key,
        pattern,
        retry,
    } = step
    else {
        return start_over(turn);
    };
    let text = input.text.trim();
    let fits = match &pattern {
        Some(p) => p.is_match(text),
        None => !text.is_empty(),
    };
    if !fits {
        let again = retry.as_deref().unwrap_or(&prompt);
        turn.replies
            .push(render(env, flow, node_id, again, state, input)?);
        turn.waiting_at = Some(node_id.to_owned());
        return Ok(None);
    }
    state.insert(key, Value::String(text.to_owned()));
    Ok(node.next.clone())
}

fn step_of<'f>(
    flow: &'f Flow,
    node_id: &str,
) -> Result<(&'f crate::flows::flow::Node, Step), FlowError> {
    let node = flow.node(node_id).ok_or_else(|| FlowError::MissingNode {
        flow: flow.name.clone(),
        node: node_id.to_owned(),
    })?;
    let step = node.step().map_err(|(field, reason)| FlowError::BadNode {
        flow: flow.name.clone(),
        node: node_id.to_owned(),
        reason: format!("{field}: {reason}"),
    })?;
    Ok((node, step))
}

fn matches(test: &Test, subject: &str) -> bool {
    let folded = subject.trim().to_lowercase();
    match test {
        Test::Equals(v) => folded == v.trim().to_lowercase(),
        Test::Contains(v) => folded.contains(&v.trim().to_lowercase()),
        Test::Regex(r) => r.is_match(subject),
    }
}

fn state_text(state: &SessionState, key: &str) -> String {
    match state.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn render(
    env: &Environment<'_>,
    flow: &Flow,
    node_id: &str,
    template: &str,
    state: &SessionState,
    input: &TurnInput,
) -> Result<String, FlowError> {
    let context = json!({
        "message": {
            "text": input.text,
            "sender": { "id": input.sender_id, "name": input.sender_name },
            "channel": input.channel,
        },
        "state": state,
        "session": { "id": input.session_id, "message_count": input.message_count },
        "tenant": { "id": input.tenant_id, "name": input.tenant_name },
        "team": { "id": input.team_id, "name": input.team_name },
    });
    env.render_str(template, context)
        .map_err(|e| FlowError::Template {
            flow: flow.name.clone(),
            node: node_id.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::flow::Node;

    fn input(text: &str) -> TurnInput {
        TurnInput {
            text: text.into(),
            sender_id: "U1".into(),
            sender_name: Some("Dana".into()),
            channel: "slack".into(),
            session_id: "0123456789abcdef".into(),
            message_count: 1,
            tenant_id: "acme".into(),
            tenant_name: "ACME Corporation".into(),
            team_id: Some("support".into()),
            team_name: Some("Customer Support".into()),
        }
    }

    fn demo(name: &str) -> Flow {
        let path = format!(
            "{}/../bundles/flows/{name}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        Flow::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn flow(yaml: &str) -> Flow {
        Flow::parse(
            "t.yaml",
            &format!("name: t\nversion: \"1\"\nnodes:\n{yaml}"),
        )
        .unwrap()
    }

    /// Runs `messages` as consecutive turns, carrying the wait and state along.
    fn converse(
        flow: &Flow,
        messages: &[&str],
    ) -> (Vec<Vec<String>>, Option<String>, SessionState) {
        let mut state = SessionState::new();
        let mut waiting: Option<String> = None;
        let mut all = Vec::new();
        for m in messages {
            let turn = run_turn(flow, waiting.as_deref(), &mut state, &input(m)).unwrap();
            waiting = turn.waiting_at.clone();
            all.push(turn.replies);
        }
        (all, waiting, state)
    }

    #[test]
    fn acme_support_asks_checks_branches_and_replies_with_state() {
        let acme = demo("acme_support_flow");
        let (replies, waiting, state) = converse(
            &acme,
            &[
                "hi",
                "Dana",
                "my order is late",
                "12345",
                "where is my delivery?",
            ],
        );
        assert_eq!(
            replies[0],
            [
                "Welcome to ACME Support! How can I help?",
                "May I have your name?"
            ]
        );
        assert_eq!(replies[1], ["Thanks Dana! What is your order number?"]);
        // Not an order number: the retry prompt, and the same question stays open.
        assert_eq!(
            replies[2],
            ["Order numbers are 5 to 10 digits, like 12345. What is yours?"]
        );
        assert_eq!(
            replies[3],
            ["Got it, order 12345. Is it about a refund, a delivery, or something else?"]
        );
        assert_eq!(
            replies[4],
            [
                "Dana, order 12345 is with the carrier. I have asked them for an update and will message you here."
            ]
        );
        assert_eq!(waiting, None);
        assert_eq!(state["name"], "Dana");
        assert_eq!(state["order"], "12345");
    }

    #[test]
    fn branch_cases_are_tried_in_order_then_the_default() {
        let acme = demo("acme_support_flow");
        let ending = |topic: &str| {
            let (replies, _, _) = converse(&acme, &["hi", "Sam", "55555", topic]);
            replies[3][0].clone()
        };
        // "refund" is the first case, so it wins over the delivery regex.
        assert!(ending("REFUND for a late delivery").contains("refund request"));
        assert!(ending("tracking please").contains("with the carrier"));
        assert_eq!(
            ending("the colour is wrong"),
            "Thanks Sam. A Customer Support agent will pick up order 55555 shortly."
        );
    }

    #[test]
    fn set_end_and_close_behave() {
        let bigcorp = demo("bigcorp_helpdesk_flow");
        let mut state = SessionState::new();
        let first = run_turn(&bigcorp, None, &mut state, &input("hello")).unwrap();
        assert_eq!(first.replies, ["BigCorp Helpdesk here. What's your issue?"]);
        let second = run_turn(
            &bigcorp,
            first.waiting_at.as_deref(),
            &mut state,
            &input("printer on fire"),
        )
        .unwrap();
        assert_eq!(state["ticket"], "HD-012345");
        assert_eq!(
            second.replies,
            ["I have filed ticket HD-012345 for: printer on fire. An engineer will contact you."]
        );
        assert!(second.closed);
        assert_eq!(second.waiting_at, None);
        let vpn = run_turn(
            &bigcorp,
            first.waiting_at.as_deref(),
            &mut state,
            &input("VPN down"),
        )
        .unwrap();
        assert!(!vpn.closed, "a plain end does not close the session");
    }

    #[test]
    fn equals_ignores_case_and_space_and_state_cases_read_state() {
        let f = flow(
            "  - id: a\n    type: set\n    config: { key: plan, value: \"gold\" }\n    next: b\n  - id: b\n    type: branch\n    config:\n      cases:\n        - { equals: \"yes\", next: agreed }\n        - { on: state.plan, equals: GOLD, next: gold }\n      default: other\n  - id: agreed\n    type: reply\n    config: { message: \"yes!\" }\n  - id: gold\n    type: reply\n    config: { message: \"gold {{ message.sender.name }}\" }\n  - id: other\n    type: reply\n    config: { message: \"no\" }\n",
        );
        assert_eq!(converse(&f, &["  YES "]).0[0], ["yes!"]);
        assert_eq!(converse(&f, &["maybe"]).0[0], ["gold Dana"]);
    }

    #[test]
    fn template_errors_fail_the_turn_naming_the_node() {
        let f =
            flow("  - id: a\n    type: reply\n    config: { message: \"{{ state.x.y.z() }}\" }\n");
        let err = run_turn(&f, None, &mut SessionState::new(), &input("hi")).unwrap_err();
        assert!(
            matches!(&err, FlowError::Template { node, .. } if node == "a"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_node_field_and_reason() {
        let cases = [
            (
                "  - id: a\n    type: reply\n    config: { message: \"{{ oops\" }\n",
                "nodes[0].config.message",
            ),
            (
                "  - id: a\n    type: ask\n    config: { prompt: p, key: \"Bad Key\" }\n",
                "nodes[0].config.key",
            ),
            (
                "  - id: a\n    type: ask\n    config: { prompt: p, key: k, pattern: \"([\" }\n",
                "nodes[0].config.pattern",
            ),
            (
                "  - id: a\n    type: branch\n    config: { cases: [{ equals: x, next: nowhere }], default: a }\n",
                "nodes[0].config.cases[0].next: no node has id `nowhere`",
            ),
            (
                "  - id: a\n    type: branch\n    config: { cases: [{ equals: x, contains: z, next: a }], default: a }\n",
                "nodes[0].config.cases[0]: a case has exactly one",
            ),
            (
                "  - id: a\n    type: reply\n    config: { message: m }\n  - id: b\n    type: reply\n    config: { message: m }\n",
                "nodes[1]: node `b` cannot be reached",
            ),
            (
                "  - id: a\n    type: set\n    config: { key: k, value: v }\n    next: b\n  - id: b\n    type: reply\n    config: { message: m }\n    next: a\n",
                "nodes: nodes a -> b -> a form a loop",
            ),
            (
                "  - id: a\n    type: end\n    config: { close: maybe }\n",
                "nodes[0].config.close",
            ),
            (
                "  - id: a\n    type: reply\n    config: { message: m, extra: 1 }\n",
                "nodes[0].config.extra: unknown field",
            ),
        ];
        for (nodes, expected) in cases {
            let text = format!("name: t\nversion: \"1\"\nnodes:\n{nodes}");
            let errors = Flow::parse("t.yaml", &text).unwrap_err();
            let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert!(
                shown
                    .iter()
                    .any(|s| s.starts_with(&format!("t.yaml: {expected}"))),
                "{expected}: {shown:?}"
            );
        }
        // A loop through an `ask` waits for input each time round: allowed.
        flow(
            "  - id: a\n    type: ask\n    config: { prompt: p, key: k }\n    next: b\n  - id: b\n    type: reply\n    config: { message: m }\n    next: a\n",
        );
    }

    #[test]
    fn a_loop_that_slipped_past_validation_stops_at_the_step_limit() {
        let looping = Flow {
            name: "spin".into(),
            version: "1".into(),
            description: None,
            nodes: vec![Node {
                id: "a".into(),
                kind: "set".into(),
                config: serde_json::from_value(json!({ "key": "n", "value": "x" })).unwrap(),
                next: Some("a".into()),
            }],
        };
        let err = run_turn(&looping, None, &mut SessionState::new(), &input("hi")).unwrap_err();
        assert_eq!(
            err,
            FlowError::StepLimit {
                flow: "spin".into(),
                node: "a".into()
            }
        );
    }
}
