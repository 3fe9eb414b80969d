// Device: what the registry knows, the latest values, charts of each metric over a chosen
// range (aggregates per bucket, min–max band, gaps), raw readings and a CSV download.

import { ApiError, getJson } from "../api.js";
import { MetricChart } from "../chart.js";
import { h } from "../dom.js";
import { download } from "../download.js";
import { ago, count, dateTime, rfc3339, withUnit } from "../format.js";
import { href, replaceParams } from "../router.js";
import { Pager, metadataChips, pagerControls, statusBadge } from "../table.js";

// Each range is read in buckets that give 60 to 170 points, from the rollups where a
// bucket is a whole number of minutes or hours.
const RANGES = {
  "1h": { label: "1 h", seconds: 3600, bucket: "1m" },
  "24h": { label: "24 h", seconds: 86400, bucket: "10m" },
  "7d": { label: "7 d", seconds: 7 * 86400, bucket: "1h" },
  "30d": { label: "30 d", seconds: 30 * 86400, bucket: "6h" },
};
const RAW_PAGE = 20;

function fact(label, ...content) {
  return [h("dt", {}, label), h("dd", {}, ...content)];
}

function table(id, headings, body) {
  const cells = headings.map(([label, numeric]) =>
    h("th", { scope: "col", class: numeric ? "num" : null }, label),
  );
  return h("table", { id, class: "data compact" }, h("thead", {}, h("tr", {}, cells)), body);
}

function emptyRow(columns, text) {
  return h("tr", {}, h("td", { colspan: columns, class: "empty" }, text));
}

function caption(metric, unit, bucket) {
  return [
    h("span", { class: "chart-title" }, unit ? `${metric} (${unit})` : metric),
    h("span", { class: "chart-note" }, `average per ${bucket}, min–max band; gaps: no readings`),
  ];
}

/** The CSV file of a device over [start, end), named after both. */
function csvName(deviceId, start, end) {
  const stamp = (t) => t.replace(/[-:]/g, "");
  return `${deviceId}_${stamp(start)}_${stamp(end)}.csv`;
}

export const devicePage = {
  name: "device",

  mount(root, parts, params, ctx) {
    const deviceId = parts[1] ?? "";
    const path = `/v1/devices/${encodeURIComponent(deviceId)}`;
    const state = {
      range: RANGES[params.get("range")] ? params.get("range") : "1h",
      metric: params.get("metric") || "",
    };
    const remember = () =>
      replaceParams(["device", deviceId], { range: state.range, metric: state.metric });
    const charts = new Map(); // metric -> { figure, chart }
    const rawPager = new Pager();
    let visible = null; // the range on screen: { startMs, endMs }

    const title = h("h1", {}, deviceId);
    const facts = h("dl", { class: "facts" });
    const latestBody = h("tbody");
    const chartsBox = h("div", { id: "charts", class: "charts" });
    const rawBody = h("tbody");

    const rangeButtons = Object.entries(RANGES).map(([key, range]) =>
      h(
        "button",
        {
          type: "button",
          "data-range": key,
          onclick: () => {
            state.range = key;
            rawPager.reset();
            remember();
            ctx.refresh();
          },
        },
        range.label,
      ),
    );

    const downloadNote = h("span", { id: "download-note", class: "note", "aria-live": "polite" });
    const downloadButton = h("button", { type: "button", id: "download-csv" }, "Download CSV");
    downloadButton.addEventListener("click", async () => {
      if (!visible) {
        return;
      }
      const start = rfc3339(new Date(visible.startMs));
      const end = rfc3339(new Date(visible.endMs));
      downloadButton.disabled = true;
      downloadNote.textContent = "Downloading…";
      try {
        const params = { device: deviceId, start, end, format: "csv" };
        const bytes = await download("/v1/export", params, csvName(deviceId, start, end));
        downloadNote.textContent = `Downloaded ${count(bytes)} bytes of CSV.`;
      } catch (error) {
        downloadNote.textContent = `The download failed: ${error.message}.`;
      } finally {
        downloadButton.disabled = false;
      }
    });

    const metricSelect = h("select", { id: "raw-metric", "aria-label": "Metric" });
    metricSelect.addEventListener("change", () => {
      state.metric = metricSelect.value;
      rawPager.reset();
      remember();
      ctx.refresh();
    });
    const rawPaging = pagerControls(rawPager, {
      idPrefix: "raw",
      size: () => RAW_PAGE,
      onMove: ctx.refresh,
      unit: "Readings",
    });

    root.append(
      h("p", {}, h("a", { href: href(["fleet"]) }, "← Fleet")),
      title,
      facts,
      h("h2", {}, "Latest values"),
      table("latest-table", [["Metric"], ["Value", true], ["At"]], latestBody),
      h("h2", {}, "Over time"),
      h(
        "div",
        { class: "toolbar" },
        h("span", { class: "segmented" }, rangeButtons),
        downloadButton,
        downloadNote,
      ),
      chartsBox,
      h("h2", {}, "Raw readings"),
      h(
        "div",
        { class: "toolbar" },
        metricSelect,
        h("span", { class: "note" }, "oldest first, in the range above"),
        rawPaging.element,
      ),
      table("raw-table", [["Time"], ["Metric"], ["Value", true]], rawBody),
    );

    function showDevice(device) {
      title.replaceChildren(device.device_id, " ", statusBadge(device.status));
      const interval = device.expected_interval_s
        ? `${device.expected_interval_s} s`
        : "not declared";
      const lastSeen = h("span", { title: dateTime(device.last_seen) }, ago(device.last_seen));
      facts.replaceChildren(
        ...fact("Name", device.name ?? "—"),
        ...fact("Last seen", lastSeen),
        ...fact("Expected interval", interval),
        ...fact("Last seq", device.last_seq === null ? "—" : String(device.last_seq)),
        ...fact("Seq gaps", count(device.seq_gaps)),
        ...fact("Registered", dateTime(device.created_at)),
        ...fact("Metadata", metadataChips(device.metadata)),
      );
    }

    function showLatest(latest) {
      const now = Date.now();
      latestBody.replaceChildren(
        ...latest.values.map((v) =>
          h(
            "tr",
            { "data-metric": v.metric },
            h("td", {}, v.metric),
            h("td", { class: "num" }, withUnit(v.value, v.unit)),
            h("td", { title: dateTime(v.ts) }, ago(v.ts, now)),
          ),
        ),
      );
      if (latest.values.length === 0) {
        latestBody.append(emptyRow(3, "No readings yet."));
      }
    }

    function chartOf(metric) {
      let entry = charts.get(metric);
      if (!entry) {
        const plot = h("div", { class: "plot" });
        const figure = h("figure", { class: "chart", "data-metric": metric }, h("figcaption"));
        figure.append(plot);
        entry = { figure, chart: null, plot };
        charts.set(metric, entry);
      }
      return entry;
    }

    function showCharts(answer, range) {
      // Strings have no line to draw (their values are in the tables); booleans chart as the
      // share of true.
      const charted = answer.series.filter((series) => series.type !== "string");
      const metrics = new Set(charted.map((series) => series.metric));
      for (const [metric, entry] of charts) {
        if (!metrics.has(metric)) {
          entry.chart?.destroy();
          charts.delete(metric);
        }
      }
      const entries = charted.map((series) => [series, chartOf(series.metric)]);
      // On the page before drawing: a chart takes its width from its place.
      chartsBox.replaceChildren(...entries.map(([, entry]) => entry.figure));
      if (entries.length === 0) {
        chartsBox.append(h("p", { class: "note" }, "No readings in this range."));
      }
      for (const [series, entry] of entries) {
        entry.chart ??= new MetricChart(entry.plot, series.unit ?? "");
        const { slots, drawn } = entry.chart.update(
          series.points,
          visible.startMs,
          visible.endMs,
          answer.bucket_s,
        );
        entry.figure.querySelector("figcaption").replaceChildren(
          ...caption(series.metric, series.unit, range.bucket),
        );
        // What the chart shows, for people reading the page source and for the tests.
        Object.assign(entry.figure.dataset, {
          points: String(series.points.length),
          drawn: String(drawn),
          slots: String(slots),
          start: answer.start,
          end: answer.end,
          bucketS: String(answer.bucket_s),
        });
      }
    }

    function showMetrics(metrics) {
      if (!metrics.includes(state.metric)) {
        state.metric = metrics[0] ?? "";
      }
      metricSelect.replaceChildren(
        ...metrics.map((m) => h("option", { value: m, selected: m === state.metric }, m)),
      );
    }

    function showRaw(answer) {
      rawBody.replaceChildren(
        ...answer.readings.map((r) =>
          h(
            "tr",
            {},
            h("td", {}, dateTime(r.ts)),
            h("td", {}, r.metric),
            h("td", { class: "num" }, withUnit(r.value, answer.units?.[r.metric])),
          ),
        ),
      );
      if (answer.readings.length === 0) {
        rawBody.append(emptyRow(3, "No readings in this range."));
      }
      rawPager.seen(answer.next_cursor);
      rawPaging.update(answer.readings.length);
    }

    function notFound() {
      root.replaceChildren(
        h("p", {}, h("a", { href: href(["fleet"]) }, "← Fleet")),
        h("h1", {}, "No such device"),
        h("p", { class: "message", id: "device-missing" }, `The API has no device ${deviceId}.`),
      );
    }

    return {
      async refresh() {
        const range = RANGES[state.range];
        const endMs = Math.floor(Date.now() / 1000) * 1000;
        visible = { startMs: endMs - range.seconds * 1000, endMs };
        const span = { start: rfc3339(new Date(visible.startMs)), end: rfc3339(new Date(endMs)) };
        for (const button of rangeButtons) {
          button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
        }
        let device, latest, buckets;
        try {
          [device, latest, buckets] = await Promise.all([
            getJson(path),
            getJson(`${path}/latest`),
            getJson(`${path}/readings`, { ...span, bucket: range.bucket, agg: "avg,min,max" }),
          ]);
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) {
            notFound();
            return;
          }
          throw error;
        }
        showDevice(device);
        showLatest(latest);
        showCharts(buckets, range);
        showMetrics(latest.values.map((v) => v.metric));
        if (state.metric) {
          const raw = { ...span, metric: state.metric, limit: RAW_PAGE, cursor: rawPager.cursor };
          showRaw(await getJson(`${path}/readings`, raw));
        }
      },

      leave() {
        for (const { chart } of charts.values()) {
          chart?.destroy();
        }
      },
    };
  },
};
