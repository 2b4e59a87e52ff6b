// Small DOM helpers shared by the views: element builders, focus-keeping replacement,
// labels for wire enums, and a loader that never runs twice at once.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      element.textContent = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
export const s = (tag, attrs, ...children) =>
  build(document.createElementNS(SVG_NS, tag), attrs, children);

// Replace a container's children; the element that had focus (found again by its
// data-focus key) keeps it, so live updates do not throw a keyboard user out.
export function replace(container, ...children) {
  const focused = document.activeElement?.closest?.("[data-focus]");
  const key = focused && container.contains(focused) ? focused.dataset.focus : null;
  container.replaceChildren();
  build(container, {}, children);
  if (key) container.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

// Runs `load` now, or once more after the run in progress when asked during one.
export function reloader(load) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await load();
      } while (again);
    })();
    try {
      await running;
    } finally {
      running = null;
    }
  };
  return run;
}

export function titleCase(text) {
  const words = text.toLowerCase().split("_").filter(Boolean);
  const sentence = words.join(" ");
  return sentence.charAt(0).toUpperCase() + sentence.slice(1);
}

// "CLUSTER_PHASE_WAITING_FOR_SUBNET" -> "Waiting for subnet"
export function phaseLabel(phase) {
  return titleCase(phase.replace(/^(CLUSTER|NODE)_PHASE_/, ""));
}

// "REMEDIATION_MODE_HOST_AWARE" -> "Host aware"
export function enumLabel(value, prefix) {
  return value ? titleCase(value.replace(prefix, "")) : "";
}

const TIME = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

export function formatTime(iso) {
  return iso ? TIME.format(new Date(iso)) : "";
}

export function statusClass(status) {
  const value = String(status ?? "").toLowerCase();
  if (["ready", "running", "succeeded", "available", "healthy"].includes(value)) return "ok";
  if (["degraded", "cordoned", "pending_approval", "quarantined", "unhealthy"].includes(value))
    return "warn";
  if (["failed", "offline", "deleted", "deleting", "cancelled"].includes(value)) return "bad";
  return "busy";
}

export function badge(status, label = status) {
  return h("span", { class: `badge badge-${statusClass(status)}` }, label);
}

export function alertBox(message) {
  return h("p", { class: "alert", role: "alert" }, message);
}
