// Where the console is: the hash part of the URL, "#/device/pump-17?range=24h". It holds
// the page and its settings (so a reload or a bookmark keeps them) and never a key.

/** The current route: its path segments (decoded) and its parameters. */
export function currentRoute() {
  const [path, query = ""] = window.location.hash.replace(/^#\/?/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

/** The hash of a route: href(["device", id], { range: "1h" }); empty parameters left out. */
export function href(parts, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      query.set(name, value);
    }
  }
  const path = parts.map(encodeURIComponent).join("/");
  const text = query.toString();
  return `#/${path}${text ? `?${text}` : ""}`;
}

/** Record a page's settings in the URL without leaving the page (no hashchange event). */
export function replaceParams(parts, params) {
  window.history.replaceState(null, "", href(parts, params));
}
