// Downloads that need the key: fetched with the Authorization header and handed to the
// browser as a Blob, since a plain link would have to carry the key in its URL.

import { getBlob } from "./api.js";
import { h } from "./dom.js";

/** Fetch `path` with `params` and save it as `filename`. */
export async function download(path, params, filename) {
  const blob = await getBlob(path, params);
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // The browser reads the Blob after the click returns; a minute is ample for it.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}
