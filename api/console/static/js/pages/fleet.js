// Fleet: devices by status, readings a minute, and every device in a table that the API
// sorts, filters and pages (so it stays fast at 100,000 devices).

import { getJson } from "../api.js";
import { debounce, h } from "../dom.js";
import { ago, count, dateTime } from "../format.js";
import { href, replaceParams } from "../router.js";
import { Pager, metadataChips, pagerControls, statusBadge } from "../table.js";

const SIZES = ["25", "50", "100", "500"];
const STATUSES = [
  ["", "All statuses"],
  ["online", "Online"],
  ["offline", "Offline"],
  ["never_seen", "Never seen"],
];
const COLUMNS = [
  ["device_id", "Device"],
  [null, "Name"],
  [null, "Status"],
  ["last_seen", "Last seen"],
  ["seq_gaps", "Seq gaps"],
  [null, "Metadata"],
];
// The first click on a column sorts what matters first: recent, gappy, A to Z.
const FIRST_DIRECTION = { device_id: "", last_seen: "-", seq_gaps: "-" };

function card(id, label, onClick) {
  const number = h("span", { class: "card-number", id }, "–");
  const body = [number, h("span", { class: "card-label" }, label)];
  const element = onClick
    ? h("button", { type: "button", class: "card", onclick: onClick }, body)
    : h("div", { class: "card" }, body);
  return { element, number };
}

function option(value, label, selected) {
  return h("option", { value, selected: value === selected }, label);
}

export const fleetPage = {
  name: "fleet",
  title: "Fleet",

  mount(root, _parts, params, ctx) {
    const state = {
      sort: params.get("sort") || "device_id",
      status: params.get("status") || "",
      search: params.get("search") || "",
      size: SIZES.includes(params.get("size")) ? params.get("size") : "50",
    };
    const pager = new Pager();
    const changed = () => {
      pager.reset();
      replaceParams(["fleet"], { ...state, sort: state.sort === "device_id" ? "" : state.sort });
      ctx.refresh();
    };

    const status = h(
      "select",
      { id: "status-filter", "aria-label": "Status" },
      STATUSES.map(([value, label]) => option(value, label, state.status)),
    );
    status.addEventListener("change", () => {
      state.status = status.value;
      changed();
    });
    const filterBy = (value) => () => {
      state.status = value;
      status.value = value;
      changed();
    };
    const cards = {
      total: card("count-total", "devices", filterBy("")),
      online: card("count-online", "online", filterBy("online")),
      offline: card("count-offline", "offline", filterBy("offline")),
      never_seen: card("count-never-seen", "never seen", filterBy("never_seen")),
      minute: card("readings-minute", "readings in the last minute"),
      hour: card("readings-hour", "readings in the last hour"),
    };

    const search = h("input", {
      id: "device-search",
      type: "search",
      value: state.search,
      placeholder: "Search id or name",
      "aria-label": "Search devices by id or name",
      maxlength: "64",
    });
    search.addEventListener(
      "input",
      debounce(() => {
        state.search = search.value.trim();
        changed();
      }, 250),
    );
    const size = h(
      "select",
      { id: "page-size", "aria-label": "Devices per page" },
      SIZES.map((n) => option(n, `${n} a page`, state.size)),
    );
    size.addEventListener("change", () => {
      state.size = size.value;
      changed();
    });
    const paging = pagerControls(pager, {
      idPrefix: "devices",
      size: () => Number(state.size),
      onMove: ctx.refresh,
      unit: "Devices",
    });

    const heads = COLUMNS.map(([key, label]) => {
      if (!key) {
        return h("th", { scope: "col" }, label);
      }
      const button = h("button", { type: "button", class: "sort", "data-sort": key }, label);
      button.addEventListener("click", () => {
        const [field, descending] = [state.sort.replace(/^-/, ""), state.sort.startsWith("-")];
        state.sort = field === key ? (descending ? key : `-${key}`) : FIRST_DIRECTION[key] + key;
        changed();
      });
      return h("th", { scope: "col", "data-key": key }, button);
    });
    const body = h("tbody");
    const table = h(
      "table",
      { id: "device-table", class: "data" },
      h("thead", {}, h("tr", {}, heads)),
      body,
    );

    root.append(
      h("h1", {}, "Fleet"),
      h("div", { class: "cards" }, Object.values(cards).map((c) => c.element)),
      h("div", { class: "toolbar" }, search, status, size, paging.element),
      h("div", { class: "table-wrap" }, table),
    );

    function showSort() {
      const [field, descending] = [state.sort.replace(/^-/, ""), state.sort.startsWith("-")];
      for (const th of heads) {
        const key = th.dataset.key;
        if (key === field) {
          th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        } else {
          th.removeAttribute("aria-sort");
        }
      }
    }

    function row(device, now) {
      const link = h("a", { href: href(["device", device.device_id]) }, device.device_id);
      return h(
        "tr",
        { "data-device": device.device_id },
        h("td", {}, link),
        h("td", {}, device.name ?? ""),
        h("td", {}, statusBadge(device.status)),
        h("td", { title: dateTime(device.last_seen) }, ago(device.last_seen, now)),
        h("td", { class: "num" }, count(device.seq_gaps)),
        h("td", {}, metadataChips(device.metadata)),
      );
    }

    return {
      async refresh() {
        const [fleet, page] = await Promise.all([
          getJson("/v1/fleet"),
          getJson("/v1/devices", {
            sort: state.sort,
            status: state.status,
            search: state.search,
            limit: state.size,
            cursor: pager.cursor,
          }),
        ]);
        for (const key of ["total", "online", "offline", "never_seen"]) {
          cards[key].number.textContent = count(fleet.devices[key]);
        }
        cards.minute.number.textContent = count(fleet.readings_last_minute);
        cards.hour.number.textContent = count(fleet.readings_last_hour);
        const now = Date.now();
        body.replaceChildren(...page.devices.map((device) => row(device, now)));
        if (page.devices.length === 0) {
          const cell = h("td", { colspan: COLUMNS.length, class: "empty" }, "No device matches.");
          body.append(h("tr", {}, cell));
        }
        pager.seen(page.next_cursor);
        paging.update(page.devices.length);
        showSort();
      },
    };
  },
};
