// The cluster timeline, drawn as SVG: one row for the cluster and one per node (deleted
// workers too), each a run of phase bands over time, with markers for node lifecycle
// events and the audit trail (scaling, cordons, repairs). Times are fleet time.

import { formatTime, h, phaseLabel, s } from "./dom.js";

const LABEL_WIDTH = 190;
const ROW = 24;
const GAP = 6;
const AXIS = 26;
const PAD = 12;
const STEPS = [1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]
  .concat([2, 7, 14, 30, 90].map((d) => d * 86400));

// Phase -> colour family (classes in console.css, each with a text label in the legend).
export function family(phase) {
  const name = phase.replace(/^(CLUSTER|NODE)_PHASE_/, "");
  if (/FAILED/.test(name)) return "failed";
  if (name === "DEGRADED") return "degraded";
  if (name === "READY" || name === "RUNNING") return "ready";
  if (/TESTS/.test(name)) return "testing";
  if (/PAUSED/.test(name)) return "paused";
  if (name === "DELETING" || name === "SUCCEEDED") return "ended";
  if (["QUEUED", "SCHEDULED", "PENDING", "SCHEDULING"].includes(name)) return "queued";
  return "provisioning";
}

export const FAMILIES = {
  queued: "Queued",
  provisioning: "Provisioning",
  testing: "Testing",
  ready: "Ready / running",
  degraded: "Degraded",
  failed: "Failed",
  paused: "Paused",
  ended: "Deleting / gone",
};

const ms = (iso) => new Date(iso).getTime();

function rowsOf(cluster, timeline) {
  const rows = [{ key: "cluster", label: "Cluster", transitions: cluster.phase_transitions }];
  for (const node of cluster.control_plane_nodes) {
    rows.push({ key: node.node_id, label: `${node.node_id} (control plane)`, transitions: node.phase_transitions });
  }
  for (const node of cluster.gpu_worker_nodes) {
    rows.push({ key: node.node_id, label: node.node_id, transitions: node.phase_transitions });
  }
  for (const node of cluster.deleted_gpu_worker_nodes ?? []) {
    rows.push({ key: node.node_id, label: `${node.node_id} (gone)`, transitions: node.phase_transitions });
  }
  const byKey = new Map(rows.map((row) => [row.key, row]));
  for (const row of rows) row.markers = [];
  for (const event of cluster.node_lifecycle_events ?? []) {
    (byKey.get(event.node_id) ?? rows[0]).markers.push({
      at: event.timestamp,
      kind: "lifecycle",
      text: `${event.reason}: ${event.message}`,
    });
  }
  for (const event of timeline?.events ?? []) {
    if (event.object_type === "cluster" && event.kind === "phase") continue; // the bands
    const row = event.object_type === "cluster" ? rows[0] : (byKey.get(event.object) ?? rows[0]);
    row.markers.push({ at: event.at, kind: "audit", text: `${event.object_type} ${event.kind}: ${event.message}` });
  }
  return rows;
}

function range(cluster, rows, now) {
  const times = [ms(cluster.created_at ?? now)];
  for (const row of rows) {
    for (const t of row.transitions) times.push(ms(t.transition_time));
    for (const m of row.markers) times.push(ms(m.at));
  }
  const start = Math.min(...times);
  const end = Math.max(ms(now), ...times);
  return [start, Math.max(end, start + 60_000)];
}

function tickFormat(span) {
  const options =
    span > 2 * 86400_000
      ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
      : span > 600_000
        ? { hour: "2-digit", minute: "2-digit" }
        : { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return new Intl.DateTimeFormat(undefined, options);
}

function axis(start, end, x, width, height) {
  const span = end - start;
  const step = (STEPS.find((sec) => (span / (sec * 1000)) * 110 <= width) ?? 365 * 86400) * 1000;
  const format = tickFormat(span);
  const ticks = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) {
    const px = x(t);
    ticks.push(
      s("line", { class: "tick", x1: px, x2: px, y1: AXIS - 4, y2: height - PAD }),
      s("text", { class: "tick-label", x: px, y: AXIS - 10, "text-anchor": "middle" }, format.format(t)),
    );
  }
  return ticks;
}

function bands(row, y, x, end) {
  const sorted = [...row.transitions].sort((a, b) => ms(a.transition_time) - ms(b.transition_time));
  return sorted.map((t, i) => {
    const from = ms(t.transition_time);
    const to = i + 1 < sorted.length ? ms(sorted[i + 1].transition_time) : end;
    const left = x(from);
    const width = Math.max(x(to) - left, 2);
    const label = phaseLabel(t.phase);
    const until = i + 1 < sorted.length ? formatTime(sorted[i + 1].transition_time) : "now";
    const group = s(
      "g",
      { class: `band phase-${family(t.phase)}`, "data-phase": t.phase, "data-row": row.key },
      s("title", {}, `${row.label}: ${label}, ${formatTime(t.transition_time)} to ${until}`),
      s("rect", { x: left, y, width, height: ROW, rx: 3 }),
    );
    if (width > label.length * 6.6 + 10) {
      group.append(s("text", { x: left + 5, y: y + ROW / 2 + 4 }, label));
    }
    return group;
  });
}

function markers(row, y, x) {
  return row.markers.map((m) => {
    const cx = x(ms(m.at));
    const cy = y + ROW / 2;
    const shape =
      m.kind === "lifecycle"
        ? `M ${cx} ${cy - 7} L ${cx + 6} ${cy + 5} L ${cx - 6} ${cy + 5} Z`
        : `M ${cx} ${cy - 7} L ${cx + 6} ${cy} L ${cx} ${cy + 7} L ${cx - 6} ${cy} Z`;
    return s(
      "path",
      { class: `marker marker-${m.kind}`, d: shape, "data-row": row.key },
      s("title", {}, `${formatTime(m.at)}: ${m.text}`),
    );
  });
}

export function drawTimeline(cluster, timeline, width) {
  const now = timeline?.now ?? new Date().toISOString();
  const rows = rowsOf(cluster, timeline);
  const [start, end] = range(cluster, rows, now);
  const height = AXIS + rows.length * (ROW + GAP) + PAD;
  const plot = Math.max(width - LABEL_WIDTH - PAD, 200);
  const x = (t) => LABEL_WIDTH + ((t - start) / (end - start)) * plot;
  const current = cluster.phase_transitions.at(-1);
  const summary =
    `Timeline of cluster ${cluster.cluster_name}: ${rows.length - 1} nodes; the cluster is ` +
    `${current ? phaseLabel(current.phase) : cluster.status} since ` +
    `${current ? formatTime(current.transition_time) : formatTime(cluster.created_at)}.`;
  const svg = s(
    "svg",
    {
      class: "timeline",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": summary,
      "data-cluster-status": cluster.status,
    },
    s("title", {}, summary),
    axis(start, end, x, width - PAD, height),
    rows.map((row, i) => {
      const y = AXIS + i * (ROW + GAP);
      return s(
        "g",
        { class: "row" },
        s("text", { class: "row-label", x: 0, y: y + ROW / 2 + 4 }, row.label),
        bands(row, y, x, end),
        markers(row, y, x),
      );
    }),
    s("line", { class: "now", x1: x(ms(now)), x2: x(ms(now)), y1: AXIS - 4, y2: height - PAD }),
  );
  return svg;
}

export function legend() {
  return h(
    "ul",
    { class: "legend", "aria-label": "Timeline legend" },
    Object.entries(FAMILIES).map(([key, label]) =>
      h("li", {}, h("span", { class: `swatch phase-${key}`, "aria-hidden": "true" }), label),
    ),
    h("li", {}, h("span", { class: "swatch marker-lifecycle", "aria-hidden": "true" }), "Node lifecycle event"),
    h("li", {}, h("span", { class: "swatch marker-audit", "aria-hidden": "true" }), "Audit event"),
  );
}
