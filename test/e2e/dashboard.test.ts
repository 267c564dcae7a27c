// The web dashboard (/ui) in a real browser: Debian's Chromium driven by
// playwright-core against a lab's controller. An operator signs in with the
// token, sees the hosts and the VM, plans a migration, confirms it, watches
// the timeline reach done and the VM's VF show up on the other host. The page
// runs with its fallback poll at an hour (?poll=3600) and is watched for
// requests of the migration's record: each phase must show within a few
// seconds of its start, so the timeline moves on server-sent events or the
// test fails. The lab
// runs plain HTTP (tls: false): the browser would otherwise need the lab's
// client certificate. The guest is a real one (not no-OS): a no-OS guest never
// brings its failover primary back, so its VF would not move; 64 MiB of its
// RAM are random, so the copy lasts long enough to chart. The screenshot
// goes to var/artifacts/dashboard.png (FERRY_ARTIFACTS_DIR overrides);
// FERRY_UPDATE_SCREENSHOT=1 also copies it to docs/dashboard.png.
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import type { ControllerClient } from "../../src/api/client.ts";
import { reachable } from "../../src/lab/lab-demo.ts";
import { labClient, labDown, labSpec, labUp } from "../../src/lab/lab.ts";
import type { LabState } from "../../src/lab/lab.ts";

const NAME = "dashb";
const ROOT = join(import.meta.dirname, "../..");
const ARTIFACTS = process.env["FERRY_ARTIFACTS_DIR"] ?? join(ROOT, "var/artifacts");
/** How Chromium runs here (as root, on a machine with no way out): no sandbox, no GPU, nothing in the background. */
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server"];

/** How late a phase may show on the page after the controller began it (ms): events arrive at once; the fallback poll is an hour. */
const SHOWN_WITHIN_MS = 3_000;

/** Page script: records each data-phase the migration's card takes, in order, with when it showed (epoch ms), in window.phasesSeen. */
const PHASE_RECORDER = `{
  const seen = [];
  window.phasesSeen = seen;
  new MutationObserver(() => {
    for (const el of document.querySelectorAll("article.migration")) {
      const p = el.getAttribute("data-phase");
      if (p && seen[seen.length - 1]?.phase !== p) seen.push({ phase: p, at: Date.now() });
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-phase"] });
}`;

describe("the web dashboard in Chromium", { timeout: 180_000 }, () => {
  let lab: LabState;
  let client: ControllerClient;
  let token = "";
  let browser: Browser;
  let page: Page;
  let url = "";

  before(async () => {
    process.env["FERRY_CONTEXT"] = `/tmp/ferry-dashb-context-${process.pid}.json`;
    await labDown(NAME);
    lab = await labUp(labSpec({ name: NAME, hosts: 2, configText: "networks: [physnet1]\nvfs: { physnet1: 4 }\n", tls: false }));
    client = await labClient(lab);
    token = (await readFile(lab.controllerTokenFile, "utf8")).trim();
    url = lab.controller.url;
    const vm = await client.createVm({ name: "web1", host: "host1", memoryMiB: 256, guestFillMiB: 64, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }] });
    // the guest answers on its NIC: its failover primary (the VF) is in use, so a migration moves it
    assert.ok(await reachable(lab.netns, vm.nics[0]!.address.split("/")[0]!, 90_000), "the guest answers the lab's peer");
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  });
  after(async () => {
    await browser?.close();
    await labDown(NAME);
  });

  it("serves the page without the token and the data only with it", async () => {
    const pageRes = await fetch(`${url}/ui/`);
    assert.equal(pageRes.status, 200);
    assert.match(pageRes.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(pageRes.headers.get("content-security-policy") ?? "", /connect-src 'self'/);
    const js = await fetch(`${url}/ui/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get("content-type") ?? "", /^text\/javascript/);
    assert.equal((await fetch(`${url}/ui/tsconfig.json`)).status, 404, "only the page's own files are served");
    assert.equal((await fetch(`${url}/v1/hosts`)).status, 401, "the API still wants the token");
  });

  it("refuses a wrong token at the login, then signs in and shows the hosts and the VM with its VF", async () => {
    await page.goto(`${url}/ui?poll=3600`);
    await page.fill("#token", "not-the-token");
    await page.click("#signin");
    await page.getByText("The controller refused this token").waitFor();
    await page.fill("#token", token);
    await page.click("#signin");
    await page.locator('[data-host="host1"]').waitFor();
    await page.locator('[data-host="host2"]').waitFor();
    const row = page.locator('tr[data-vm="web1"]');
    await row.waitFor();
    assert.equal(await row.locator(".runs-on").textContent(), "host1");
    const vf = (await client.vm("web1")).nics[0]!.vf!;
    assert.match(await row.locator(".vfref").textContent() ?? "", new RegExp(`VF ${vf}@host1`));
    assert.equal(await page.locator('[data-host="host1"] .vf[data-vm="web1"]').count(), 1, "host1 shows the VM's VF in use");
    assert.equal(await page.locator('[data-host="host2"] .vf[data-vm="web1"]').count(), 0);
    assert.equal(await page.locator('[data-host="host2"] .vf.free').count(), 4, "host2's four VFs are free");
    await page.locator(".live.on").waitFor({ timeout: 10_000 });
  });

  it("plans a migration, starts it on confirm, follows the timeline to done, and the VF moves to host2", async () => {
    const row = page.locator('tr[data-vm="web1"]');
    await row.locator("button.migrate").click();
    const dialog = page.locator("#migrate-dialog");
    await dialog.locator('[data-destination="host2"]').waitFor();
    const confirm = dialog.locator("#migrate-confirm");
    assert.equal(await confirm.textContent(), "Migrate web1 to host2");
    assert.deepEqual((await client.migrations()).length, 0, "the plan starts nothing");
    // every phase the migration's card shows, as it shows it (recorded in the page: a poll from here could miss one)
    await page.evaluate(PHASE_RECORDER);
    // what the page asks while the migration runs: its record (a poll) or its stream
    const asked: string[] = [];
    const onRequest = (r: { method(): string; url(): string }): void => {
      if (r.method() === "GET") asked.push(new URL(r.url()).pathname);
    };
    page.on("request", onRequest);
    await confirm.click();
    await dialog.waitFor({ state: "hidden" });
    const card = page.locator("article.migration").first();
    await card.waitFor();
    await card.locator('.tl-step[data-phase="done"].reached').waitFor({ timeout: 60_000 });
    page.off("request", onRequest);
    const id = await card.getAttribute("data-migration");
    assert.ok(id, "the card names its migration");
    const recorded: unknown = await page.evaluate("window.phasesSeen");
    assert.ok(Array.isArray(recorded) && recorded.every((p: { phase?: unknown; at?: unknown }) => typeof p.phase === "string" && typeof p.at === "number"), "the recorder ran");
    const shown = recorded as { phase: string; at: number }[];
    const seen = shown.map((p) => p.phase);
    assert.ok(asked.includes(`/v1/migrations/${id}/events`), `the page follows the migration's stream: ${asked.join(" ")}`);
    assert.deepEqual(asked.filter((p) => p === `/v1/migrations/${id}`), [], "the page did not poll the migration's record");
    const timings = (await client.migration(id)).timings as Record<string, { startedAt: number } | undefined>;
    for (const p of shown.filter((x) => x.phase !== "planned")) {
      const began = timings[p.phase]?.startedAt;
      assert.ok(began !== undefined, `the record has phase ${p.phase}`);
      assert.ok(p.at - began <= SHOWN_WITHIN_MS, `phase ${p.phase} showed ${p.at - began} ms after it began (at most ${SHOWN_WITHIN_MS}): the page must follow the events, not a poll`);
    }
    const samples = Number(/([0-9]+) samples/.exec((await card.locator(".legend").textContent()) ?? "")?.[1] ?? "0");
    assert.ok(samples >= 1, `the chart drew QEMU's RAM progress from the stream: ${samples} samples`);
    assert.ok(seen.length >= 2 && seen.at(-1) === "done", `the card went through phases to done: ${seen.join(" → ")}`);
    const order = ["planned", "begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm", "done"];
    assert.ok(seen.every((p, i) => i === 0 || order.indexOf(p) > order.indexOf(seen[i - 1]!)), `the card's phase only went forward: ${seen.join(" → ")}`);
    const reached = await Promise.all((await card.locator(".tl-step.reached").all()).map((step) => step.getAttribute("data-phase")));
    for (const p of ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm", "done"]) assert.ok(reached.includes(p), `timeline shows ${p}: ${reached.join(" ")}`);
    assert.equal(await card.locator(".badge.succeeded").count(), 1, "the outcome: succeeded");

    const moved = (await client.vm("web1")).nics[0]!.vf!;
    assert.equal((await client.vm("web1")).host, "host2");
    await page.locator('tr[data-vm="web1"] .runs-on', { hasText: "host2" }).waitFor({ timeout: 10_000 });
    assert.match(await page.locator('tr[data-vm="web1"] .vfref').textContent() ?? "", new RegExp(`VF ${moved}@host2`));
    await page.locator(`[data-host="host2"] .vf[data-vm="web1"][data-vf="${moved}"]`).waitFor({ timeout: 10_000 });
    await page.locator('[data-host="host1"] .vf[data-vm="web1"]').waitFor({ state: "detached", timeout: 10_000 });
    assert.match(await card.locator(".vfmove").textContent() ?? "", new RegExp(`→ ${moved}@host2`));
    await page.locator(".history tr[data-migration] .badge.succeeded").waitFor();
    await page.locator(".events .ev-outcome").waitFor();
    await page.locator(".toast").first().waitFor({ state: "detached", timeout: 10_000 }); // a clean screenshot

    await mkdir(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(`dashboard: screenshot ${shot}; phases seen ${shown.map((p) => `${p.phase} +${p.at - (timings[p.phase]?.startedAt ?? p.at)} ms`).join(" → ")}; ${samples} progress samples\n`);
    if (process.env["FERRY_UPDATE_SCREENSHOT"] === "1") await copyFile(shot, join(ROOT, "docs/dashboard.png"));
  });
});
