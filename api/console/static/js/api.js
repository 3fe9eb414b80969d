// Calls to the query API with the key in the Authorization header (never in the URL).

import { apiKey } from "./session.js";

/** An answer other than 2xx; `status` 0 means the API did not answer at all. */
export class ApiError extends Error {
  constructor(status, code, detail, retryAfterS = null) {
    super(detail);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

/** GET `path` with query `params` (empty values left out) and return the parsed JSON. */
export async function getJson(path, params = {}, key = apiKey()) {
  const response = await call(path, params, key);
  return response.json();
}

/** GET `path` and return the body as a Blob (for downloads). */
export async function getBlob(path, params = {}) {
  const response = await call(path, params, apiKey());
  return response.blob();
}

async function call(path, params, key) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(name, value);
    }
  }
  let response;
  try {
    response = await fetch(url, {
      headers: { Authorization: `Bearer ${key}` },
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", `the API at ${window.location.host} does not answer`);
  }
  if (!response.ok) {
    // The API answers {"error", "detail"}; anything else came from something in between.
    const body = await response.json().catch(() => ({}));
    const retry = Number(response.headers.get("Retry-After")) || null;
    throw new ApiError(
      response.status,
      body.error ?? `http_${response.status}`,
      body.detail ?? (response.statusText || `HTTP ${response.status}`),
      retry,
    );
  }
  return response;
}
