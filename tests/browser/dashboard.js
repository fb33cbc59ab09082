// Drives Debian's headless chromium (playwright-core, executablePath) against
// a running pipeline's dashboard. Run by tests/dashboard_e2e.rs,
// which starts Mosquitto, the pipeline and, once this script prints READY, the
// simulated clinics. Protocol on stdout: one line READY, then one line
// RESULT {json}. Any failure exits non-zero with the reason on stderr.
//
// Environment: DASH_URL (http://127.0.0.1:PORT), DASH_USER, DASH_PASSWORD,
// SCREENSHOT (path of the 12-lead screenshot), FIGURES_SCREENSHOT (optional,
// the figures page), CHROMIUM (default /usr/bin/chromium), TIMEOUT_MS
// (default 240000).
"use strict";
const { chromium } = require("playwright-core");

const url = process.env.DASH_URL;
const user = process.env.DASH_USER;
const password = process.env.DASH_PASSWORD;
const screenshot = process.env.SCREENSHOT;
const timeout = Number(process.env.TIMEOUT_MS || 240000);

function fail(msg) {
  process.stderr.write("dashboard.js: " + msg + "\n");
  process.exit(1);
}

async function main() {
  if (!url || !user || !password || !screenshot) fail("DASH_URL, DASH_USER, DASH_PASSWORD and SCREENSHOT are needed");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    page.setDefaultTimeout(timeout);

    // Not logged in: the browser lands on the login page.
    await page.goto(url + "/");
    if (!page.url().endsWith("/login")) fail("without a session / did not redirect to /login but to " + page.url());
    // A wrong password is refused.
    await page.fill("#user", user);
    await page.fill("#password", password + "-wrong");
    await page.click("#login");
    await page.waitForSelector("#login-error");
    await page.fill("#user", user);
    await page.fill("#password", password);
    await page.click("#login");
    await page.waitForURL(url + "/");
    await page.waitForFunction(() => document.getElementById("live").textContent === "live");
    const before = await page.locator("tr.alert-row").count();
    if (before !== 0) fail("expected no alert before the clinics start, found " + before);
    // Marks this document: it must survive until the alert shows (no reload).
    await page.evaluate(() => { window.__sameDocument = "yes"; });
    process.stdout.write("READY\n");

    const row = page.locator("tr.alert-row").first();
    await row.waitFor({ state: "visible" });
    const same = await page.evaluate(() => window.__sameDocument);
    if (same !== "yes") fail("the page was reloaded before the alert appeared");
    const alertId = await row.getAttribute("data-alert-id");
    const visits = await page.locator(".clinic li").count();

    await row.locator("a.open").click();
    await page.waitForURL(url + "/alerts/" + alertId);
    await page.waitForSelector("#ecg svg.ecg12");
    // The ST table and the reasons come from their own request.
    await page.waitForSelector("#st tbody tr");
    await page.waitForSelector("#reasons li");
    const leads = await page.locator("#ecg svg g.lead").count();
    const criteria = await page.locator('#ecg svg g.lead[data-criteria="true"]').count();
    const stRows = await page.locator("#st tbody tr").count();
    const reasons = await page.locator("#reasons li").count();
    await page.screenshot({ path: screenshot, fullPage: true });

    // Acknowledge with the verdict: a confirmed STEMI.
    await page.click("#ack-confirmed");
    await page.waitForFunction(
      (who) => document.getElementById("ack-status").textContent.startsWith("Acknowledged by " + who),
      user,
    );
    const status = await page.locator("#ack-status").textContent();
    const exportHref = await page.locator("#export-report").getAttribute("href");
    if (!exportHref || !exportHref.endsWith("/report.svg")) fail("no report export link: " + exportHref);

    // The chest-pain centre's figures, from the archive.
    await page.click("header a[href='/figures']");
    await page.waitForURL(url + "/figures");
    await page.waitForSelector("#by-clinic tr.figure-row");
    const figureRows = await page.locator("#by-clinic tr.figure-row").count();
    if (process.env.FIGURES_SCREENSHOT) await page.screenshot({ path: process.env.FIGURES_SCREENSHOT, fullPage: true });
    process.stdout.write("RESULT " + JSON.stringify({ alertId, leads, criteria, stRows, reasons, visits, status, figureRows, screenshot }) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
