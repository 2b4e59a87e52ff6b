// One cluster: its drawn timeline, nodes with health and latest remediation, scaling,
// deletion and the kubeconfig download. Redrawn when the stream names this cluster.

import * as api from "./api.js";
import { alertBox, badge, enumLabel, formatTime, h, phaseLabel, reloader, replace } from "./dom.js";
import { drawTimeline, legend } from "./timeline.js";

function details(c) {
  const items = [
    ["Cluster id", c.cluster_id],
    ["Region", c.region],
    ["GPUs", `${c.num_gpus} × ${c.gpu_type}`],
    ["Type", c.cluster_type],
    ["Billing", c.billing_type],
    ["Driver", `CUDA ${c.cuda_version}, driver ${c.nvidia_driver_version}`],
    ["Created", formatTime(c.created_at)],
    ["First ready", c.first_ready_at ? formatTime(c.first_ready_at) : "not yet"],
  ];
  return h("dl", { class: "facts" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function remediationCell(r) {
  if (!r) return "none";
  return [
    badge(r.state, enumLabel(r.state, "")),
    ` ${enumLabel(r.mode, "REMEDIATION_MODE_")}, ${formatTime(r.create_time)} `,
    h("a", { href: "#/remediations" }, "inbox"),
  ];
}

function nodeTable(c, health) {
  const rows = [
    ...c.control_plane_nodes.map((n) => ({ ...n, role: "Control plane" })),
    ...c.gpu_worker_nodes.map((n) => ({ ...n, role: "GPU worker" })),
  ];
  if (!rows.length) return h("p", {}, "No nodes yet.");
  return h(
    "table",
    { class: "list", "aria-labelledby": "nodes-title" },
    h("thead", {}, h("tr", {}, ["Node", "Role", "Host", "Status", "Health", "GPUs", "Latest remediation"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      rows.map((n) =>
        h(
          "tr",
          { "data-node": n.node_id },
          h("th", { scope: "row" }, n.node_id),
          h("td", {}, n.role),
          h("td", {}, n.host_name),
          h("td", {}, badge(n.status)),
          h("td", {}, badge(health[n.node_id] ?? "unknown")),
          h("td", {}, n.num_gpus ?? 0),
          h("td", {}, n.role === "GPU worker" ? remediationCell(n.latest_remediation) : "—"),
        ),
      ),
    ),
  );
}

function textTimeline(c, timeline) {
  const entries = [
    ...c.phase_transitions.map((t) => [t.transition_time, `Cluster: ${phaseLabel(t.phase)}`]),
    ...[...c.control_plane_nodes, ...c.gpu_worker_nodes, ...(c.deleted_gpu_worker_nodes ?? [])].flatMap((n) =>
      n.phase_transitions.map((t) => [t.transition_time, `${n.node_id}: ${phaseLabel(t.phase)}`]),
    ),
    ...(c.node_lifecycle_events ?? []).map((e) => [e.timestamp, `${e.node_id}: ${e.reason} (${e.message})`]),
    ...(timeline?.events ?? [])
      .filter((e) => e.kind !== "phase")
      .map((e) => [e.at, `${e.object}: ${e.kind} (${e.message})`]),
  ].sort((a, b) => new Date(a[0]) - new Date(b[0]));
  return h(
    "details",
    { class: "as-text" },
    h("summary", {}, "The timeline as text"),
    h("ol", {}, entries.map(([at, text]) => h("li", {}, h("time", { datetime: at }, formatTime(at)), " ", text))),
  );
}

function download(c) {
  const bytes = Uint8Array.from(atob(c.kube_config), (ch) => ch.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/yaml" }));
  const link = h("a", { href: url, download: `${c.cluster_name}-kubeconfig.yaml`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function actions(id, state, refresh) {
  const note = h("div", { "aria-live": "polite" });
  const say = (text, failed) => replace(note, failed ? alertBox(text) : h("p", {}, text));
  const gpus = h("input", { id: "scale-gpus", type: "number", min: 8, step: 8, required: true });
  const scale = h(
    "form",
    { class: "inline" },
    h("label", { for: "scale-gpus" }, "GPUs"),
    gpus,
    h("button", { type: "submit" }, "Scale"),
  );
  scale.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.put(api.clusterPath(id), { num_gpus: Number(gpus.value) });
      say(`Scaling to ${gpus.value} GPUs.`);
      refresh();
    } catch (error) {
      say(`Not scaled: ${error.message}`, true);
    }
  });
  const credentials = h("button", { type: "button", onclick: () => download(state.cluster) }, "Download kubeconfig");
  const confirm = h("div", { class: "confirm", hidden: true });
  const remove = h("button", { type: "button", class: "danger", onclick: () => {
    confirm.hidden = false;
    confirm.querySelector("button")?.focus();
  } }, "Delete cluster…");
  confirm.append(
    h("p", {}, "Delete this cluster? Its nodes go back to the fleet; this cannot be undone."),
    h("button", { type: "button", class: "danger", onclick: async () => {
      confirm.hidden = true;
      try {
        await api.del(api.clusterPath(id));
        say("The cluster is being deleted.");
        refresh();
      } catch (error) {
        say(`Not deleted: ${error.message}`, true);
      }
    } }, "Delete it"),
    h("button", { type: "button", class: "secondary", onclick: () => {
      confirm.hidden = true;
      remove.focus();
    } }, "Keep it"),
  );
  const section = h(
    "section",
    { class: "card", "aria-labelledby": "actions-title" },
    h("h2", { id: "actions-title" }, "Manage"),
    h("div", { class: "actions" }, scale, credentials, remove),
    confirm,
    note,
  );
  const update = (c) => {
    if (!gpus.value) gpus.value = c.num_gpus;
    credentials.disabled = !c.kube_config;
    credentials.title = c.kube_config ? "" : "Available once the control plane answers";
    remove.disabled = c.status === "Deleting";
  };
  return [section, update];
}

export function showCluster(main, [id]) {
  const title = h("h1", { tabindex: "-1" }, id);
  const status = h("span", { class: "status", "aria-live": "polite" });
  const facts = h("div");
  const chart = h("div", { class: "timeline-box" });
  const asText = h("div");
  const nodes = h("div");
  const problem = h("div");
  const state = { cluster: null, timeline: null };
  const redraw = () => {
    if (state.cluster) replace(chart, drawTimeline(state.cluster, state.timeline, Math.max(chart.clientWidth, 640)));
  };
  let refresh = null;
  const [manage, updateActions] = actions(id, state, () => refresh());
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/clusters" }, "Clusters"), " / ", id),
    h("div", { class: "title-row" }, title, status),
    problem,
    facts,
    h("section", { class: "card", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), chart, legend(), asText),
    h("section", { class: "card", "aria-labelledby": "nodes-title" }, h("h2", { id: "nodes-title" }, "Nodes"), nodes),
    manage,
  );
  refresh = reloader(async () => {
    try {
      const [cluster, timeline] = await Promise.all([
        api.get(api.clusterPath(id)),
        api.get(`/console/v1/clusters/${encodeURIComponent(id)}/timeline`),
      ]);
      Object.assign(state, { cluster, timeline });
    } catch (error) {
      const gone = error.status === 404 && state.cluster;
      replace(problem, alertBox(gone ? "This cluster has been deleted." : error.message));
      if (gone) manage.hidden = true;
      return;
    }
    const c = state.cluster;
    document.title = `${c.cluster_name} · clusterplane`;
    title.textContent = c.cluster_name;
    replace(status, badge(c.status));
    replace(facts, details(c));
    redraw();
    const open = asText.querySelector("details")?.open ?? false;
    replace(asText, textTimeline(c, state.timeline));
    asText.querySelector("details").open = open;
    replace(nodes, nodeTable(c, state.timeline.node_health));
    updateActions(c);
  });
  refresh();
  let resized = null;
  const onResize = () => {
    if (!main.contains(chart)) return window.removeEventListener("resize", onResize);
    clearTimeout(resized);
    resized = setTimeout(redraw, 150);
  };
  window.addEventListener("resize", onResize);
  return {
    refresh,
    onChange: (change) => {
      if (change.clusters.includes(id) || change.removed.includes(id)) refresh();
    },
  };
}
