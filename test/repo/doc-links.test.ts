// README.md and docs/ explain Ferry on their own: every relative link resolves
// to a file in this repository, and no text sends a reader to a place outside it.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";

const root = join(import.meta.dirname, "../..");
const docs = ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

/** Markdown link targets `[text](target)`, without the #anchor; external and anchor-only links left out. */
export function relativeLinks(md: string): string[] {
  const out: string[] = [];
  for (const m of md.matchAll(/\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = m[1]!.split("#")[0]!;
    if (target === "" || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    out.push(target);
  }
  return out;
}

describe("docs stand alone", () => {
  it("finds relative links and skips URLs and anchors", () => {
    assert.deepEqual(relativeLinks("see [a](docs/a.md#x), [b](https://x.org/y), [c](#top), [d](../e.md \"t\")"), ["docs/a.md", "../e.md"]);
  });

  it("every relative link in README.md and docs/ resolves to a file inside the repository", () => {
    const broken: string[] = [];
    for (const doc of docs) {
      for (const target of relativeLinks(readFileSync(join(root, doc), "utf8"))) {
        const abs = resolve(root, dirname(doc), target);
        const inside = !relative(root, abs).startsWith("..");
        if (!inside || !existsSync(abs)) broken.push(`${doc}: ${target}${inside ? " (no such file)" : " (outside the repository)"}`);
      }
    }
    assert.deepEqual(broken, [], "fix these links: a user of Ferry has only this repository");
  });

  it("no text points to the developers' shared folder or its files", () => {
    const hits: string[] = [];
    for (const doc of docs) {
      readFileSync(join(root, doc), "utf8").split("\n").forEach((line, i) => {
        if (/\.\.\/shared|\bDESIGN\.md\b|\bFINDINGS\.md\b|\bseeds\//.test(line)) hits.push(`${doc}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.deepEqual(hits, [], "README.md and docs/ must describe Ferry in the repository's own words (docs/design.md, docs/architecture.md)");
  });
});
