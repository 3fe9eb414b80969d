// Building elements without HTML strings: text is always text, never parsed as markup, and
// handlers are attached as listeners (the Content-Security-Policy forbids inline ones).

/**
 * Make an element: h("a", { href: "#/x", class: "c", onclick: f }, "text", child).
 * Attributes that are null, undefined or false are left out; true sets an empty one.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name.startsWith("on")) {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return element;
}

/** Wait `ms` after the last call before calling `fn` (for typing in a search box). */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
