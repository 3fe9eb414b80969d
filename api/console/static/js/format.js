// How times and numbers read in the console: local time written the ISO way (one reading
// for everyone, 24 hours), relative ages, grouped digits.

const pad = (n) => String(n).padStart(2, "0");

const COUNT = new Intl.NumberFormat();
const VALUE = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });

/** "2026-11-20" in the browser's zone. */
export function day(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** "13:05:09", or "13:05" without seconds, in the browser's zone. */
export function timeOfDay(date, seconds = true) {
  const hm = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return seconds ? `${hm}:${pad(date.getSeconds())}` : hm;
}

/** "2026-11-20 13:05:09" in the browser's zone, or "never" for null. */
export function dateTime(iso) {
  if (!iso) {
    return "never";
  }
  const date = new Date(iso);
  return `${day(date)} ${timeOfDay(date)}`;
}

/** How long ago `iso` was, in the largest whole unit: "12 s ago", "3 h ago"; "never" for null. */
export function ago(iso, now = Date.now()) {
  if (!iso) {
    return "never";
  }
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size) {
      return `${Math.floor(seconds / size)} ${unit} ago`;
    }
  }
  return `${seconds} s ago`;
}

/** A whole number with grouped digits. */
export function count(n) {
  return COUNT.format(n);
}

/** A reading's value: numbers to three decimals at most, anything else as it came. */
export function value(v) {
  return typeof v === "number" ? VALUE.format(v) : String(v);
}

/** `v` with its unit when the answer carried one ("21.5 °C"). */
export function withUnit(v, unit) {
  return unit ? `${value(v)} ${unit}` : value(v);
}

/** An RFC 3339 UTC time to the second, as the API takes it. */
export function rfc3339(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}
