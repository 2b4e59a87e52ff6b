// The clusters list (status, GPUs, region, type, billing) and the create form.

import * as api from "./api.js";
import { alertBox, badge, formatTime, h, reloader, replace } from "./dom.js";

const BILLING = ["ON_DEMAND", "RESERVED"];
const TYPES = ["KUBERNETES", "SLURM"];

function clusterTable(clusters) {
  if (!clusters.length) return h("p", {}, "No clusters yet. Create one below.");
  return h(
    "table",
    { class: "list", "aria-labelledby": "clusters-title" },
    h(
      "thead",
      {},
      h("tr", {}, ["Name", "Status", "GPUs", "Region", "Type", "Billing", "Created"].map((c) => h("th", { scope: "col" }, c))),
    ),
    h(
      "tbody",
      {},
      clusters.map((c) =>
        h(
          "tr",
          { "data-cluster-id": c.cluster_id },
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#/clusters/${encodeURIComponent(c.cluster_id)}`, "data-focus": `open-${c.cluster_id}` }, c.cluster_name),
          ),
          h("td", {}, badge(c.status)),
          h("td", {}, `${c.num_gpus} × ${c.gpu_type}`),
          h("td", {}, c.region),
          h("td", {}, c.cluster_type),
          h("td", {}, c.billing_type),
          h("td", {}, formatTime(c.created_at)),
        ),
      ),
    ),
  );
}

function field(id, label, control, hint) {
  control.id = id;
  control.name = id;
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("small", { id: `${id}-hint` }, hint) : null,
  );
}

const options = (values, label = (v) => v) =>
  values.map((v) => h("option", { value: v }, label(v)));

function createForm(regions, navigate) {
  const region = h("select", { required: true }, options(regions.map((r) => r.name)));
  const gpuType = h("select", { required: true });
  const driver = h("select", { required: true });
  const fillRegion = () => {
    const chosen = regions.find((r) => r.name === region.value) ?? regions[0];
    gpuType.replaceChildren(...options(chosen?.supported_instance_types ?? []));
    driver.replaceChildren(
      ...(chosen?.driver_versions ?? []).map((d) =>
        h("option", { value: d.id }, `CUDA ${d.cuda_version}, driver ${d.nvidia_driver_version} (${d.os})`),
      ),
    );
  };
  region.addEventListener("change", fillRegion);
  fillRegion();
  const name = h("input", { required: true, maxlength: 63, autocomplete: "off" });
  const gpus = h("input", { type: "number", min: 8, step: 8, value: 8, required: true });
  const type = h("select", {}, options(TYPES));
  const billing = h("select", {}, options(BILLING));
  const days = h("input", { type: "number", min: 1, max: 365, value: 7 });
  const daysField = field("create-days", "Reservation (days)", days);
  const toggleDays = () => {
    daysField.hidden = billing.value !== "RESERVED";
  };
  billing.addEventListener("change", toggleDays);
  toggleDays();
  const status = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Create cluster");
  const form = h(
    "form",
    { class: "card create", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "Create a cluster"),
    h(
      "div",
      { class: "fields" },
      field("create-name", "Name", name, "Letters, digits and dashes; up to 63"),
      field("create-region", "Region", region),
      field("create-gpu-type", "GPU type", gpuType),
      field("create-gpus", "GPUs", gpus, "A multiple of 8"),
      field("create-type", "Cluster type", type),
      field("create-driver", "Driver", driver),
      field("create-billing", "Billing", billing),
      daysField,
    ),
    submit,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    const body = {
      cluster_name: name.value.trim(),
      region: region.value,
      gpu_type: gpuType.value,
      num_gpus: Number(gpus.value),
      cluster_type: type.value,
      billing_type: billing.value,
      nvidia_version_id: driver.value,
    };
    if (billing.value === "RESERVED") body.duration_days = Number(days.value);
    try {
      const created = await api.post("/v1/compute/clusters", body);
      navigate(`#/clusters/${encodeURIComponent(created.cluster_id)}`);
    } catch (error) {
      replace(status, alertBox(`The cluster was not created: ${error.message}`));
      submit.disabled = false;
    }
  });
  return form;
}

export function showClusters(main, _params, { navigate }) {
  const list = h("div", { "aria-live": "polite", "aria-busy": "true" }, h("p", {}, "Loading…"));
  const formSlot = h("div");
  main.append(
    h("h1", { id: "clusters-title", tabindex: "-1" }, "Clusters"),
    h("section", { class: "card" }, list),
    formSlot,
  );
  document.title = "Clusters · clusterplane";
  const refresh = reloader(async () => {
    try {
      const { clusters } = await api.get("/v1/compute/clusters");
      replace(list, clusterTable(clusters));
    } catch (error) {
      replace(list, alertBox(error.message));
    }
    list.setAttribute("aria-busy", "false");
  });
  refresh();
  api
    .get("/v1/compute/regions")
    .then(({ regions }) => formSlot.replaceChildren(createForm(regions, navigate)))
    .catch((error) => formSlot.replaceChildren(alertBox(`Regions: ${error.message}`)));
  return { refresh, onChange: refresh };
}
