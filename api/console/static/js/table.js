// Pieces the pages' tables share: a status badge, metadata chips, cursor paging.

import { h } from "./dom.js";

const STATUS_TEXT = { online: "online", offline: "offline", never_seen: "never seen" };

/** A device status as a coloured badge. */
export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, STATUS_TEXT[status] ?? status);
}

/** Metadata as "key value" chips; values that are not text are shown as JSON. */
export function metadataChips(metadata) {
  return h(
    "span",
    { class: "chips" },
    Object.entries(metadata ?? {}).map(([key, value]) =>
      h(
        "span",
        { class: "chip" },
        h("span", { class: "chip-key" }, key),
        typeof value === "string" ? value : JSON.stringify(value),
      ),
    ),
  );
}

/**
 * Pages of a keyset-paginated list: the cursors of the pages before this one, so that
 * "previous" goes back without the API needing to page backwards.
 */
export class Pager {
  constructor() {
    this.reset();
  }

  /** Back to the first page. */
  reset() {
    this.cursors = [null];
    this.next = null;
  }

  /** The cursor of the page on screen (null for the first). */
  get cursor() {
    return this.cursors.at(-1);
  }

  /** The number of the page on screen, from 0. */
  get index() {
    return this.cursors.length - 1;
  }

  /** Remember the next page's cursor from an answer. */
  seen(nextCursor) {
    this.next = nextCursor;
  }

  /** Move one page on; false when this is the last. */
  forward() {
    if (!this.next) {
      return false;
    }
    this.cursors.push(this.next);
    return true;
  }

  /** Move one page back; false on the first. */
  back() {
    if (this.cursors.length < 2) {
      return false;
    }
    this.cursors.pop();
    return true;
  }
}

/** Previous and next buttons and a "Devices a–b" label for a Pager; update() after each page. */
export function pagerControls(pager, { idPrefix, size, onMove, unit }) {
  const info = h("span", { class: "page-info", id: `${idPrefix}-info`, "aria-live": "polite" });
  const previous = h("button", { type: "button", id: `${idPrefix}-previous` }, "‹ Previous");
  const next = h("button", { type: "button", id: `${idPrefix}-next` }, "Next ›");
  previous.addEventListener("click", () => pager.back() && onMove());
  next.addEventListener("click", () => pager.forward() && onMove());
  const element = h("span", { class: "pager" }, info, previous, next);
  return {
    element,
    update(shown) {
      const first = pager.index * size() + 1;
      const end = pager.next ? "" : " (end)";
      info.textContent =
        shown === 0 ? `No ${unit.toLowerCase()}` : `${unit} ${first}–${first + shown - 1}${end}`;
      previous.disabled = pager.index === 0;
      next.disabled = !pager.next;
    },
  };
}
