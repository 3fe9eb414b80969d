// One metric over time with uPlot: the average as a line, the min–max range as a band, and
// a break wherever a bucket holds no reading (the API leaves such buckets out).

import { day, timeOfDay } from "./format.js";

// The band and its edges are translucent, so they read on a light or a dark page alike.
const COLOURS = { edge: "rgba(59, 100, 230, 0.4)", band: "rgba(59, 100, 230, 0.16)" };
const HEIGHT = 220;

/** A colour of the page's theme (light or dark, console.css), for what the canvas draws. */
function themeColour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/**
 * Lay the API's points on every bucket of [start, end): time in seconds, and avg, min and
 * max, null where a bucket is missing. Buckets are aligned on the epoch, as the API's are.
 */
export function alignBuckets(points, startMs, endMs, bucketS) {
  const first = Math.floor(startMs / 1000 / bucketS) * bucketS;
  const slots = Math.max(1, Math.ceil((endMs / 1000 - first) / bucketS));
  const columns = [[], [], [], []];
  for (let i = 0; i < slots; i++) {
    columns[0].push(first + i * bucketS);
    columns[1].push(null);
    columns[2].push(null);
    columns[3].push(null);
  }
  for (const point of points) {
    const slot = Math.round((Date.parse(point.ts) / 1000 - first) / bucketS);
    if (slot >= 0 && slot < slots) {
      columns[1][slot] = point.avg;
      columns[2][slot] = point.min;
      columns[3][slot] = point.max;
    }
  }
  return columns;
}

/** Tick labels of the time axis: 24-hour times, the date under the first and at midnight. */
function timeTicks(_plot, splits, _axis, _space, incrementS) {
  return splits.map((seconds, i) => {
    const date = new Date(seconds * 1000);
    if (incrementS >= 86400) {
      return day(date).slice(5);
    }
    const time = timeOfDay(date, false);
    return i === 0 || time === "00:00" ? `${time}\n${day(date).slice(5)}` : time;
  });
}

/** The time in the legend under the cursor. */
function legendTime(_plot, seconds) {
  if (seconds === null) {
    return "--";
  }
  const date = new Date(seconds * 1000);
  return `${day(date)} ${timeOfDay(date, false)}`;
}

/** A chart of one metric that can be given new data without being built again. */
export class MetricChart {
  constructor(container, label) {
    this.container = container;
    this.label = label;
    this.plot = null;
    this.resize = () => this.plot?.setSize({ width: this.width(), height: HEIGHT });
    window.addEventListener("resize", this.resize);
  }

  width() {
    return Math.max(240, this.container.clientWidth);
  }

  /** Draw `points` (the API's buckets) over [start, end); return how many buckets and points. */
  update(points, startMs, endMs, bucketS) {
    const data = alignBuckets(points, startMs, endMs, bucketS);
    // The whole range, even where its first or last buckets hold nothing.
    this.xRange = [data[0][0], endMs / 1000];
    if (this.plot && this.bucketS === bucketS) {
      this.plot.setData(data, false);
      this.plot.setScale("x", { min: this.xRange[0], max: this.xRange[1] });
    } else {
      this.plot?.destroy();
      this.bucketS = bucketS;
      this.plot = new window.uPlot(this.options(), data, this.container);
    }
    return { slots: data[0].length, drawn: data[1].filter((v) => v !== null).length };
  }

  options() {
    return {
      width: this.width(),
      height: HEIGHT,
      scales: { x: { time: true, range: () => this.xRange } },
      series: [
        { value: legendTime },
        { label: "avg", stroke: themeColour("--accent"), width: 2, spanGaps: false },
        { label: "min", stroke: COLOURS.edge, width: 1, spanGaps: false },
        { label: "max", stroke: COLOURS.edge, width: 1, spanGaps: false },
      ],
      bands: [{ series: [3, 2], fill: COLOURS.band }],
      axes: [{ values: timeTicks }, { label: this.label, size: 60 }].map((axis) => ({
        ...axis,
        stroke: themeColour("--muted"),
        grid: { stroke: themeColour("--line") },
        ticks: { stroke: themeColour("--line") },
      })),
    };
  }

  /** Stop listening and free the canvas. */
  destroy() {
    window.removeEventListener("resize", this.resize);
    this.plot?.destroy();
    this.plot = null;
  }
}
