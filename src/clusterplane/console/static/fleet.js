// The fleet (admin keys): hosts by region, fabric, block and rack coloured by state and
// marked by health, utilisation by GPU type, capacity pools and the booking calendar.

import * as api from "./api.js";
import { alertBox, formatTime, h, reloader, replace, s } from "./dom.js";

const STATES = ["available", "allocated", "quarantined", "maintenance", "offline"];

function group(items, key) {
  const groups = new Map();
  for (const item of items) {
    if (!groups.has(item[key])) groups.set(item[key], []);
    groups.get(item[key]).push(item);
  }
  return [...groups.entries()];
}

function hostCell(host) {
  const health = host.health === "healthy" ? "healthy" : `${host.open_health_signals} open health signals`;
  const text = `${host.name}: ${host.state}${host.draining ? ", draining" : ""}, ${health}` +
    (host.cluster_id ? `, cluster ${host.cluster_id}` : "");
  return h(
    "li",
    {
      class: `host state-${host.state} health-${host.health}${host.draining ? " draining" : ""}`,
      title: text,
      "data-host": host.name,
    },
    h("span", { class: "sr-only" }, text),
  );
}

function hostMap(hosts) {
  return group(hosts, "region").map(([region, inRegion]) =>
    h(
      "section",
      { class: "region", "aria-label": `Region ${region}` },
      h("h3", {}, region),
      group(inRegion, "fabric").map(([fabric, inFabric]) =>
        h(
          "div",
          { class: "fabric" },
          h("h4", {}, `Fabric ${fabric}`),
          group(inFabric, "block").map(([block, inBlock]) =>
            h(
              "div",
              { class: "block" },
              h("h5", {}, `Block ${block}`),
              h(
                "div",
                { class: "racks" },
                group(inBlock, "rack").map(([rack, inRack]) =>
                  h(
                    "figure",
                    { class: "rack" },
                    h("figcaption", {}, `Rack ${rack}`),
                    h("ul", { class: "hosts", "aria-label": `Hosts of rack ${rack}` }, inRack.map(hostCell)),
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

function mapLegend() {
  return h(
    "ul",
    { class: "legend", "aria-label": "Host map legend" },
    STATES.map((state) => h("li", {}, h("span", { class: `swatch host state-${state}`, "aria-hidden": "true" }), state)),
    h("li", {}, h("span", { class: "swatch host state-allocated health-unhealthy", "aria-hidden": "true" }), "open health signal"),
    h("li", {}, h("span", { class: "swatch host state-available draining", "aria-hidden": "true" }), "draining"),
  );
}

function utilisation(rows) {
  return h(
    "table",
    { class: "list", "aria-labelledby": "use-title" },
    h("thead", {}, h("tr", {}, ["GPU type", "Allocated", "Hosts by state"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      rows.map((u) =>
        h(
          "tr",
          { "data-gpu-type": u.gpu_type },
          h("th", { scope: "row" }, u.gpu_type),
          h(
            "td",
            {},
            `${u.allocated_gpus} of ${u.gpus} GPUs (${Math.round(u.share_allocated * 100)}%)`,
            h("meter", { min: 0, max: u.gpus, value: u.allocated_gpus, "aria-label": `${u.gpu_type} GPUs allocated` }),
          ),
          h("td", {}, Object.entries(u.hosts_by_state).map(([k, v]) => `${v} ${k}`).join(", ")),
        ),
      ),
    ),
  );
}

function pools(list) {
  if (!list.length) return h("p", {}, "No capacity pools.");
  return h(
    "table",
    { class: "list", "aria-labelledby": "pools-title" },
    h("thead", {}, h("tr", {}, ["Pool", "Region", "GPU type", "Hosts", "Held for", "From", "Until"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      list.map((p) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, p.name),
          h("td", {}, p.region),
          h("td", {}, p.gpu_type),
          h("td", {}, p.num_hosts),
          h("td", {}, p.project_id ? `project ${p.project_id}` : `organisation ${p.organization_id}`),
          h("td", {}, formatTime(p.starts_at)),
          h("td", {}, formatTime(p.ends_at)),
        ),
      ),
    ),
  );
}

// One region and GPU type of the calendar: each booking a bar from its start to its end
// (open-ended ones run to the right edge), over the next days of fleet time.
function calendarChart(entry, now) {
  const start = new Date(now).getTime();
  const ends = entry.bookings.map((b) => (b.ends_at ? new Date(b.ends_at).getTime() : 0));
  const end = Math.max(start + 7 * 86400_000, ...ends);
  const width = 900;
  const label = 170;
  const row = 20;
  const x = (t) => label + ((Math.max(t, start) - start) / (end - start)) * (width - label - 40);
  const height = 24 + Math.max(entry.bookings.length, 1) * (row + 4);
  const days = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  const ticks = [];
  for (let t = start; t <= end; t += Math.ceil((end - start) / 86400_000 / 8) * 86400_000) {
    ticks.push(
      s("line", { class: "tick", x1: x(t), x2: x(t), y1: 16, y2: height }),
      s("text", { class: "tick-label", x: x(t), y: 12, "text-anchor": "middle" }, days.format(t)),
    );
  }
  const summary = `${entry.region} ${entry.gpu_type}: ${entry.general_hosts} general hosts, ` +
    `${entry.bookings.length} bookings, at most ${entry.peak_booked_nodes} nodes booked at once`;
  return h(
    "figure",
    { class: "calendar" },
    h("figcaption", {}, summary),
    s(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary, class: "calendar-chart" },
      ticks,
      entry.bookings.map((b, i) => {
        const y = 22 + i * (row + 4);
        const from = x(new Date(b.starts_at).getTime());
        const to = b.ends_at ? x(new Date(b.ends_at).getTime()) : x(end);
        const nodes = b.general_nodes + b.pool_nodes;
        const text = `${b.cluster_name} (${b.billing_type}, ${nodes} nodes): ` +
          `${formatTime(b.starts_at)} to ${b.ends_at ? formatTime(b.ends_at) : "open-ended"}`;
        return s(
          "g",
          { class: `booking billing-${b.billing_type.toLowerCase()}` },
          s("title", {}, text),
          s("text", { class: "row-label", x: 0, y: y + 14 }, b.cluster_name),
          s("rect", { x: from, y, width: Math.max(to - from, 2), height: row, rx: 3 }),
        );
      }),
    ),
  );
}

export function showFleet(main) {
  const use = h("div", { "aria-busy": "true" }, h("p", {}, "Loading…"));
  const map = h("div");
  const poolList = h("div");
  const calendar = h("div");
  main.append(
    h("h1", { tabindex: "-1" }, "Fleet"),
    h("section", { class: "card", "aria-labelledby": "use-title" }, h("h2", { id: "use-title" }, "Utilisation by GPU type"), use),
    h("section", { class: "card", "aria-labelledby": "map-title" }, h("h2", { id: "map-title" }, "Hosts"), mapLegend(), map),
    h("section", { class: "card", "aria-labelledby": "pools-title" }, h("h2", { id: "pools-title" }, "Capacity pools"), poolList),
    h("section", { class: "card", "aria-labelledby": "calendar-title" }, h("h2", { id: "calendar-title" }, "Booking calendar"), calendar),
  );
  document.title = "Fleet · clusterplane";
  const refresh = reloader(async () => {
    try {
      const [fleet, pooled, booked] = await Promise.all([
        api.get("/console/v1/fleet"),
        api.get("/admin/v1/capacity/pools"),
        api.get("/admin/v1/capacity/calendar"),
      ]);
      replace(use, utilisation(fleet.utilisation));
      replace(map, hostMap(fleet.hosts));
      replace(poolList, pools(pooled.pools));
      replace(calendar, booked.calendar.map((entry) => calendarChart(entry, booked.now)));
    } catch (error) {
      replace(use, alertBox(error.message));
    }
    use.setAttribute("aria-busy", "false");
  });
  refresh();
  return { refresh, onChange: (change) => change.fleet && refresh() };
}
