import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { LineReader, decodeMessage, encodeCommand } from "./protocol.ts";
import { loadTranscript } from "./replay.ts";

describe("QMP protocol", () => {
  it("decodes every server line of the recorded transcripts", () => {
    for (const name of ["basic", "migration-source"]) {
      for (const e of loadTranscript(name).filter((x) => x.dir === "s")) {
        const m = decodeMessage(e.line);
        assert.ok(["greeting", "return", "error", "event"].includes(m.kind), e.line);
      }
    }
  });

  it("splits lines across chunk boundaries and ignores blank lines", () => {
    const r = new LineReader(100);
    assert.deepEqual(r.push(Buffer.from('{"a":')), []);
    assert.deepEqual(r.push(Buffer.from('1}\r\n\n{"b"')), ['{"a":1}']);
    assert.deepEqual(r.push(Buffer.from(":2}\n")), ['{"b":2}']);
  });

  it("rejects a line longer than the limit even when it arrives in pieces", () => {
    const r = new LineReader(10);
    r.push(Buffer.from("12345"));
    assert.throws(() => r.push(Buffer.from("678901")), (e: unknown) => isFerryError(e, "FERRY_ERR_QMP_PROTOCOL"));
  });

  it("rejects messages that are not QMP", () => {
    for (const line of ["{}", "null", '"x"', '{"error": 5}', '{"QMP": 1}']) {
      assert.throws(() => decodeMessage(line), (e: unknown) => isFerryError(e, "FERRY_ERR_QMP_PROTOCOL"), line);
    }
  });

  it("encodes commands with id and optional arguments", () => {
    assert.equal(encodeCommand("7", "cont"), '{"execute":"cont","id":"7"}\n');
    assert.equal(encodeCommand("8", "device_del", { id: "x" }), '{"execute":"device_del","arguments":{"id":"x"},"id":"8"}\n');
  });
});
