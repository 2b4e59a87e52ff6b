// The console's shell: sign-in, navigation, the hash router and the live stream that
// tells the current view what changed (views re-read what they show through the API).

import * as api from "./api.js";
import { showCluster } from "./cluster.js";
import { showClusters } from "./clusters.js";
import { alertBox, h } from "./dom.js";
import { showFleet } from "./fleet.js";
import { showInbox } from "./inbox.js";
import { LiveStream } from "./stream.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");
const liveState = document.getElementById("live-state");

const ROUTES = [
  { pattern: /^#\/clusters\/([^/]+)$/, show: showCluster, nav: "clusters" },
  { pattern: /^#\/remediations$/, show: showInbox, nav: "remediations" },
  { pattern: /^#\/fleet$/, show: showFleet, nav: "fleet", admin: true },
  { pattern: /^(#\/?(clusters)?)?$/, show: showClusters, nav: "clusters" },
];
const LINKS = [
  { id: "clusters", href: "#/clusters", label: "Clusters" },
  { id: "remediations", href: "#/remediations", label: "Remediations" },
  { id: "fleet", href: "#/fleet", label: "Fleet", admin: true },
];

let me = null;
let view = null; // what the current view exposes: { refresh(), onChange(change) }
const stream = new LiveStream(onStreamEvent, onStreamState);

function onStreamEvent(type, data) {
  if (type === "hello") view?.refresh?.();
  else if (type === "change") view?.onChange?.(data);
}

function onStreamState(state) {
  if (state === "signed-out") {
    signOut("The server no longer accepts this API key. Sign in again.");
    return;
  }
  liveState.textContent = state === "live" ? "Live" : "Reconnecting…";
  liveState.className = `live live-${state}`;
}

function signInForm(message) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
  });
  const form = h(
    "form",
    { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title", tabindex: "-1" }, "Sign in"),
    h("p", {}, "Use an API key of this server. It is kept in this browser tab only."),
    message ? alertBox(message) : null,
    h("label", { for: "api-key" }, "API key"),
    input,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    api.saveKey(input.value.trim());
    try {
      me = await api.get("/console/v1/me");
    } catch (error) {
      api.forgetKey();
      showSignIn(error.status === 401 ? "This API key is not valid." : error.message);
      return;
    }
    signedIn();
  });
  return [form, input];
}

function showSignIn(message) {
  stream.stop();
  me = null;
  view = null;
  nav.replaceChildren();
  account.replaceChildren();
  liveState.textContent = "";
  const [form, input] = signInForm(message);
  main.replaceChildren(form);
  input.focus();
}

function signOut(message) {
  api.forgetKey();
  showSignIn(message);
}

function signedIn() {
  nav.replaceChildren(
    ...LINKS.filter((link) => !link.admin || me.is_admin).map((link) =>
      h("a", { href: link.href, "data-nav": link.id }, link.label),
    ),
  );
  account.replaceChildren(
    h("span", { class: "who" }, `${me.project.name || me.project.id}${me.is_admin ? " (admin)" : ""}`),
    h("button", { type: "button", class: "secondary", onclick: () => signOut() }, "Sign out"),
  );
  stream.start();
  route();
}

function route() {
  if (!me) return;
  const found = ROUTES.find((r) => r.pattern.test(location.hash) && (!r.admin || me.is_admin));
  const target = found ?? ROUTES.at(-1);
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.nav === target.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const params = location.hash.match(target.pattern)?.slice(1) ?? [];
  main.replaceChildren();
  // A view draws its frame at once and loads its data after; live changes reach it from now.
  view = target.show(main, params.map(decodeURIComponent), { me, navigate });
  main.querySelector("h1")?.focus({ preventScroll: true });
}

function navigate(hash) {
  location.hash = hash;
}

window.addEventListener("hashchange", route);

async function boot() {
  if (!api.savedKey()) {
    showSignIn();
    return;
  }
  try {
    me = await api.get("/console/v1/me");
  } catch (error) {
    signOut(error.status === 401 ? undefined : error.message);
    return;
  }
  signedIn();
}

boot();
