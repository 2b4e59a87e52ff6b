// The HTTP API as the console uses it: the API key lives in this tab's sessionStorage and
// goes out only in the Authorization header. Errors carry the server's message.

const KEY = "clusterplane.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function savedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export function authHeaders() {
  return { Authorization: `Bearer ${savedKey() ?? ""}` };
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    message = body?.error?.message ?? body?.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message);
}

export async function request(method, path, body) {
  const headers = { ...authHeaders(), Accept: "application/json" };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "the server cannot be reached");
  }
  if (!response.ok) {
    throw await errorOf(response);
  }
  return response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body = {}) => request("POST", path, body);
export const put = (path, body) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);

export const clusterPath = (id) => `/v1/compute/clusters/${encodeURIComponent(id)}`;

export function remediationPath(r, action) {
  const base =
    `${clusterPath(r.cluster_id)}/instances/${encodeURIComponent(r.instance_id)}` +
    `/remediations/${encodeURIComponent(r.id)}`;
  return action ? `${base}/${action}` : base;
}
