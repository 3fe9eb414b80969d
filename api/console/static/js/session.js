// The API key lives in this tab's session storage only: never in a URL, a cookie or local
// storage. It is gone when the tab closes, and other tabs do not see it.

const KEY = "telemetry-console.api-key";

/** The key the user signed in with, or null. */
export function apiKey() {
  return sessionStorage.getItem(KEY);
}

/** Keep `key` for this tab. */
export function keepKey(key) {
  sessionStorage.setItem(KEY, key);
}

/** Forget the key. */
export function forgetKey() {
  sessionStorage.removeItem(KEY);
}
