// Rejects: the dead letters, newest first, with the reason the ingest gave for each. The
// API shows them to admin keys only (they hold raw payloads); a read key gets a note.

import { ApiError, getJson } from "../api.js";
import { debounce, h } from "../dom.js";
import { ago, dateTime } from "../format.js";
import { href, replaceParams } from "../router.js";
import { Pager, pagerControls } from "../table.js";

const PAGE = 50;
const PREVIEW_CHARS = 80;
const SOURCES = [
  ["", "MQTT and HTTP"],
  ["mqtt", "MQTT"],
  ["http", "HTTP"],
];

function payload(text) {
  if (text.length <= PREVIEW_CHARS) {
    return h("code", {}, text);
  }
  return h(
    "details",
    {},
    h("summary", {}, h("code", {}, `${text.slice(0, PREVIEW_CHARS)}…`)),
    h("pre", {}, text),
  );
}

function row(letter, now) {
  const device = letter.device_id
    ? h("a", { href: href(["device", letter.device_id]) }, letter.device_id)
    : "—";
  return h(
    "tr",
    { "data-reason": letter.reason },
    h("td", { title: dateTime(letter.received_at) }, ago(letter.received_at, now)),
    h("td", {}, letter.source),
    h("td", {}, device),
    h("td", { class: "num" }, letter.item_index === null ? "—" : String(letter.item_index)),
    h("td", {}, h("span", { class: "badge reason" }, letter.reason)),
    h("td", {}, letter.detail),
    h("td", { class: "payload" }, payload(letter.payload)),
  );
}

export const rejectsPage = {
  name: "rejects",
  title: "Rejects",

  mount(root, _parts, params, ctx) {
    const state = { reason: params.get("reason") || "", source: params.get("source") || "" };
    const pager = new Pager();
    const changed = () => {
      pager.reset();
      replaceParams(["rejects"], state);
      ctx.refresh();
    };
    const reason = h("input", {
      id: "reason-filter",
      type: "search",
      value: state.reason,
      placeholder: "Reason code",
      "aria-label": "Reason code",
      maxlength: "100",
    });
    reason.addEventListener(
      "input",
      debounce(() => {
        state.reason = reason.value.trim();
        changed();
      }, 250),
    );
    const source = h(
      "select",
      { id: "source-filter", "aria-label": "Intake" },
      SOURCES.map(([value, label]) =>
        h("option", { value, selected: value === state.source }, label),
      ),
    );
    source.addEventListener("change", () => {
      state.source = source.value;
      changed();
    });
    const paging = pagerControls(pager, {
      idPrefix: "rejects",
      size: () => PAGE,
      onMove: ctx.refresh,
      unit: "Dead letters",
    });
    const body = h("tbody");
    const content = h(
      "div",
      {},
      h("div", { class: "toolbar" }, reason, source, paging.element),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "rejects-table", class: "data" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Received", "Intake", "Device", "Item", "Reason", "Detail", "Payload"].map((label) =>
                h("th", { scope: "col", class: label === "Item" ? "num" : null }, label),
              ),
            ),
          ),
          body,
        ),
      ),
    );
    root.append(
      h("h1", {}, "Rejects"),
      h(
        "p",
        { class: "note" },
        "Messages and items the ingest refused, kept with the raw payload and the reason" +
          " (see docs/wire-protocol.md for every reason code).",
      ),
      content,
    );

    return {
      async refresh() {
        let page;
        try {
          page = await getJson("/v1/rejects", {
            reason: state.reason,
            source: state.source,
            limit: PAGE,
            cursor: pager.cursor,
          });
        } catch (error) {
          if (error instanceof ApiError && error.status === 403) {
            content.replaceChildren(
              h(
                "p",
                { class: "message", id: "rejects-forbidden" },
                "Dead letters hold the raw payloads devices sent, so the API shows them to" +
                  " admin keys only. Sign out and in again with an admin key to see them.",
              ),
            );
            return;
          }
          throw error;
        }
        const now = Date.now();
        body.replaceChildren(...page.dead_letters.map((letter) => row(letter, now)));
        if (page.dead_letters.length === 0) {
          body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No dead letters.")));
        }
        pager.seen(page.next_cursor);
        paging.update(page.dead_letters.length);
      },
    };
  },
};
