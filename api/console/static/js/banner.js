// The strip under the header that says the API cannot be reached, until it can again.

function element() {
  return document.getElementById("banner");
}

/** Show `text` in the banner. */
export function showProblem(text) {
  const banner = element();
  banner.textContent = text;
  banner.hidden = false;
}

/** Hide the banner. */
export function clearProblem() {
  const banner = element();
  banner.hidden = true;
  banner.textContent = "";
}
