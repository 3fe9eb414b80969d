// Alerts: what is firing now (GET /v1/alerts) and what happened lately, newest first
// (GET /v1/alerts/history). Both refresh with the page; a read key sees everything here.
// Acknowledging and silencing are admin actions of the API (docs/alerts.md), not the
// console's: it only reads.

import { getJson } from "../api.js";
import { h } from "../dom.js";
import { ago, dateTime, value } from "../format.js";
import { href, replaceParams } from "../router.js";
import { Pager, pagerControls } from "../table.js";

const FIRING_LIMIT = 500;
const HISTORY_PAGE = 50;
const SEVERITIES = [
  ["", "Any severity"],
  ["critical", "Critical"],
  ["warning", "Warning"],
  ["info", "Info"],
];

function severityBadge(severity) {
  return h("span", { class: `badge severity-${severity}` }, severity);
}

function deviceLink(deviceId) {
  return h("a", { href: href(["device", deviceId]) }, deviceId);
}

// No-data and offline alerts measure seconds (since the last reading, since last heard).
const SECONDS = new Set(["no_data", "offline"]);

function shown(v, kind) {
  if (v === null || v === undefined) {
    return "—";
  }
  return SECONDS.has(kind) ? `${value(Math.round(v))} s` : value(v);
}

function firingRow(alert, now) {
  const since = alert.firing_since ?? alert.since;
  const notes = [];
  if (alert.acknowledged_at) {
    notes.push(`acknowledged ${ago(alert.acknowledged_at, now)}`);
  }
  if (alert.silenced_until && Date.parse(alert.silenced_until) > now) {
    notes.push(`silenced until ${dateTime(alert.silenced_until)}`);
  }
  return h(
    "tr",
    { "data-rule": alert.rule_id, "data-device": alert.device_id, "data-state": alert.state },
    h("td", { title: dateTime(since) }, ago(since, now)),
    h("td", {}, severityBadge(alert.severity)),
    h("td", {}, alert.rule_name),
    h("td", {}, deviceLink(alert.device_id)),
    h("td", { class: "num" }, shown(alert.value, alert.kind)),
    h("td", {}, notes.join(", ")),
  );
}

function historyRow(event, now) {
  const move = event.from_state ? `${event.from_state} → ${event.event}` : event.event;
  return h(
    "tr",
    { "data-event": event.event, "data-device": event.device_id },
    h("td", { title: dateTime(event.at) }, ago(event.at, now)),
    h("td", {}, h("span", { class: `badge event-${event.event}` }, move)),
    h("td", {}, severityBadge(event.severity)),
    h("td", {}, event.rule_name),
    h("td", {}, deviceLink(event.device_id)),
    h("td", { class: "num" }, shown(event.value)),
    h("td", {}, event.detail),
  );
}

function table(id, labels, body) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id, class: "data" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          labels.map((label) =>
            h("th", { scope: "col", class: label === "Value" ? "num" : null }, label),
          ),
        ),
      ),
      body,
    ),
  );
}

function empty(body, columns, text) {
  body.append(h("tr", {}, h("td", { colspan: columns, class: "empty" }, text)));
}

export const alertsPage = {
  name: "alerts",
  title: "Alerts",

  mount(root, _parts, params, ctx) {
    const state = { severity: params.get("severity") || "" };
    const pager = new Pager();
    const severity = h(
      "select",
      { id: "severity-filter", "aria-label": "Severity" },
      SEVERITIES.map(([key, label]) =>
        h("option", { value: key, selected: key === state.severity }, label),
      ),
    );
    severity.addEventListener("change", () => {
      state.severity = severity.value;
      pager.reset();
      replaceParams(["alerts"], state);
      ctx.refresh();
    });
    const paging = pagerControls(pager, {
      idPrefix: "history",
      size: () => HISTORY_PAGE,
      onMove: ctx.refresh,
      unit: "Events",
    });
    const firingCount = h("span", { id: "firing-count" }, "…");
    const evaluated = h("p", { class: "note", id: "evaluated-at" });
    const firingBody = h("tbody");
    const historyBody = h("tbody");
    root.append(
      h("h1", {}, "Alerts"),
      h("div", { class: "toolbar" }, severity),
      h("h2", {}, "Firing now (", firingCount, ")"),
      evaluated,
      table(
        "firing-table",
        ["Firing since", "Severity", "Rule", "Device", "Value", "Note"],
        firingBody,
      ),
      h("h2", {}, "Recent history"),
      h("div", { class: "toolbar" }, paging.element),
      table(
        "history-table",
        ["When", "Event", "Severity", "Rule", "Device", "Value", "Detail"],
        historyBody,
      ),
    );

    return {
      async refresh() {
        const filter = { severity: state.severity };
        const [firing, history] = await Promise.all([
          getJson("/v1/alerts", { ...filter, limit: FIRING_LIMIT }),
          getJson("/v1/alerts/history", { ...filter, limit: HISTORY_PAGE, cursor: pager.cursor }),
        ]);
        const now = Date.now();
        const more = firing.next_cursor ? "+" : "";
        firingCount.textContent = `${firing.alerts.length}${more}`;
        evaluated.textContent = firing.evaluated_at
          ? `Rules last evaluated ${ago(firing.evaluated_at, now)}.`
          : "The rules have not been evaluated yet: is the ingest service running?";
        firingBody.replaceChildren(...firing.alerts.map((alert) => firingRow(alert, now)));
        if (firing.alerts.length === 0) {
          empty(firingBody, 6, "Nothing is firing.");
        }
        historyBody.replaceChildren(...history.events.map((event) => historyRow(event, now)));
        if (history.events.length === 0) {
          empty(historyBody, 7, "No alert events yet.");
        }
        pager.seen(history.next_cursor);
        paging.update(history.events.length);
      },
    };
  },
};
