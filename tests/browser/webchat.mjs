// The web chat as a person uses it: open the page, start a chat with the
// channel's secret, say "hi", see the demo flow's greeting, answer its
// question and see the reply that uses the answer. Writes a screenshot.
//
// Env: GREENTIC_URL (the platform), WEBCHAT_SECRET (bigcorp/helpdesk's
// webchat_token_secret), SCREENSHOT (path of the PNG to write).
import { chromium } from "playwright-core";

const base = process.env.GREENTIC_URL;
const secret = process.env.WEBCHAT_SECRET;
const screenshot = process.env.SCREENSHOT ?? "webchat.png";
if (!base || !secret) throw new Error("GREENTIC_URL and WEBCHAT_SECRET are required");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${base}/webchat?tenant=bigcorp&env=prod&team=helpdesk&channel=webchat`);
  await page.fill("input[name=name]", "Dana");
  await page.fill("input[name=secret]", secret);
  await page.click("text=Start chat");

  const bot = page.locator(".msg.bot");
  await page.fill("input[name=text]", "hi");
  await page.press("input[name=text]", "Enter");
  await bot.filter({ hasText: "BigCorp Helpdesk here. What's your issue?" }).waitFor();

  await page.fill("input[name=text]", "my printer is on fire");
  await page.press("input[name=text]", "Enter");
  const filed = bot.filter({ hasText: "for: my printer is on fire" });
  await filed.waitFor();
  const text = await filed.textContent();
  if (!/^I have filed ticket HD-[0-9A-F]{6} for: my printer is on fire\./.test(text)) {
    throw new Error(`unexpected reply: ${text}`);
  }
  const shown = await page.locator(".msg").allTextContents();
  await page.screenshot({ path: screenshot, fullPage: true });

  // Past the conversation's rate (the demo's default: 30 messages a minute,
  // two sent above), the page says so instead of pretending it was sent.
  const status = page.locator("#status");
  let refusedAfter = null;
  for (let i = 0; i < 40 && refusedAfter === null; i++) {
    await page.fill("input[name=text]", `message ${i}`);
    await page.press("input[name=text]", "Enter");
    await page.waitForFunction(n => document.querySelectorAll(".msg.user").length >= n, 3 + i);
    // The status changes only once the post is answered.
    await page.waitForTimeout(50);
    const said = await status.textContent();
    if (/too fast\. Try again in \d+ seconds/.test(said)) refusedAfter = i;
  }
  if (refusedAfter === null) throw new Error("40 quick messages were never refused");
  console.log(JSON.stringify({ ok: true, messages: shown, screenshot, refused_after: refusedAfter }));
} finally {
  await browser.close();
}
