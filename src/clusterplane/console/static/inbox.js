// The remediations inbox: repairs of the project's clusters waiting for approval first,
// then those under way, then the ended ones; approve, reject or cancel in place.

import * as api from "./api.js";
import { alertBox, badge, enumLabel, formatTime, h, reloader, replace } from "./dom.js";

const GROUPS = [
  { id: "waiting", title: "Waiting for approval", test: (r) => r.state === "PENDING_APPROVAL" },
  { id: "active", title: "Under way", test: (r) => !ENDED.has(r.state) && r.state !== "PENDING_APPROVAL" },
  { id: "ended", title: "Ended", test: (r) => ENDED.has(r.state) },
];
const ENDED = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "AUTO_RESOLVED"]);

function buttons(r, act) {
  const node = r.instance_name || r.instance_id;
  const button = (action, label, kind) =>
    h("button", {
      type: "button",
      class: kind,
      "data-focus": `${action}-${r.id}`,
      "aria-label": `${label} the repair of ${node}`,
      onclick: () => act(r, action),
    }, label);
  const list = [];
  if (r.state === "PENDING_APPROVAL") list.push(button("approve", "Approve"), button("reject", "Reject", "secondary"));
  if (r.state === "PENDING_APPROVAL" || r.state === "PENDING") list.push(button("cancel", "Cancel", "secondary"));
  return list.length ? h("div", { class: "actions" }, list) : "—";
}

function table(group, items, act) {
  return h(
    "section",
    { class: "card", "aria-labelledby": `inbox-${group.id}` },
    h("h2", { id: `inbox-${group.id}` }, `${group.title} (${items.length})`),
    items.length
      ? h(
          "table",
          { class: "list" },
          h("thead", {}, h("tr", {}, ["Node", "Cluster", "State", "Mode", "Trigger", "Reason", "Created", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            items.map((r) =>
              h(
                "tr",
                { "data-remediation-id": r.id, "data-state": r.state },
                h("th", { scope: "row" }, r.instance_name || r.instance_id),
                h("td", {}, h("a", { href: `#/clusters/${encodeURIComponent(r.cluster_id)}` }, r.cluster_name)),
                h("td", {}, badge(r.state, enumLabel(r.state, ""))),
                h("td", {}, enumLabel(r.mode, "REMEDIATION_MODE_")),
                h("td", {}, enumLabel(r.trigger, "REMEDIATION_TRIGGER_")),
                h("td", {}, r.reason ?? ""),
                h("td", {}, formatTime(r.create_time)),
                h("td", {}, buttons(r, act)),
              ),
            ),
          ),
        )
      : h("p", {}, "None."),
  );
}

export function showInbox(main) {
  const note = h("div", { "aria-live": "polite", tabindex: "-1", class: "note" });
  const body = h("div", { "aria-busy": "true" }, h("p", {}, "Loading…"));
  main.append(h("h1", { tabindex: "-1" }, "Remediations"), note, body);
  document.title = "Remediations · clusterplane";
  let refresh = null;
  const act = async (r, action) => {
    try {
      const done = await api.post(api.remediationPath(r, action), {});
      replace(note, h("p", {}, `The repair of ${r.instance_name || r.instance_id} is now ${enumLabel(done.state, "")}.`));
    } catch (error) {
      replace(note, alertBox(`Not done: ${error.message}`));
    }
    await refresh();
    // The acted-on button is gone: keep keyboard users on the outcome, not the page top.
    if (!main.contains(document.activeElement) || document.activeElement === main) note.focus();
  };
  refresh = reloader(async () => {
    try {
      const { remediations } = await api.get("/console/v1/remediations");
      replace(body, GROUPS.map((g) => table(g, remediations.filter(g.test), act)));
    } catch (error) {
      replace(body, alertBox(error.message));
    }
    body.setAttribute("aria-busy", "false");
  });
  refresh();
  return { refresh, onChange: (change) => change.remediations && refresh() };
}
