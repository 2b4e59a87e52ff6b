// Live updates: reads the server-sent events of GET /console/v1/stream with fetch (an
// EventSource cannot send the Authorization header) and reconnects with backoff.

import { authHeaders } from "./api.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One event block ("event: x\ndata: {...}") as [type, data], or null for comments.
function parseBlock(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":") || line === "") continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? [type, JSON.parse(data.join("\n"))] : null;
}

export class LiveStream {
  // onEvent(type, data) for each event; onState("live" | "reconnecting" | "signed-out").
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.stopped = true;
    this.controller = null;
  }

  start() {
    this.stopped = false;
    this.run();
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }

  async run() {
    let delay = 1000;
    while (!this.stopped) {
      this.controller = new AbortController();
      try {
        const response = await fetch("/console/v1/stream", {
          headers: { ...authHeaders(), Accept: "text/event-stream" },
          signal: this.controller.signal,
          cache: "no-store",
        });
        if (response.status === 401) {
          this.onState("signed-out");
          return;
        }
        if (response.ok) {
          this.onState("live");
          delay = 1000;
          // The server ends each stream after a while ("end"): open the next one at once.
          if (await this.read(response.body)) continue;
        }
      } catch {
        // dropped or aborted: reconnect below unless stopped
      }
      if (this.stopped) return;
      this.onState("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 30000);
    }
  }

  // Dispatches the stream's events; true when the server ended it with "end".
  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let ended = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return ended;
      buffer = (buffer + value).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) {
          ended = event[0] === "end";
          this.onEvent(...event);
        }
      }
    }
  }
}
