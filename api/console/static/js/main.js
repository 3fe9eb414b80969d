// The console's frame: sign-in gate, menu, the current page, and its refresh every few
// seconds. Errors a page does not handle itself end here: a refused key signs out, an API
// that does not answer shows the banner while the last data stays on screen.

import { ApiError } from "./api.js";
import { clearProblem, showProblem } from "./banner.js";
import { h } from "./dom.js";
import { timeOfDay } from "./format.js";
import { PAGES, pageFor } from "./pages.js";
import { currentRoute, href } from "./router.js";
import { apiKey, forgetKey } from "./session.js";
import { showSignIn } from "./signin.js";

const REFRESH_MS = 5000;
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const updated = document.getElementById("updated");
const signOutButton = document.getElementById("sign-out");

let current = null; // { page, view }
let running = null; // the view whose refresh is under way
let again = false; // a refresh was asked for meanwhile
let painted = false;

function showMenu(active) {
  const links = PAGES.filter((page) => page.title).map((page) =>
    h(
      "a",
      { href: href([page.name]), "aria-current": page === active ? "page" : null },
      page.title,
    ),
  );
  nav.replaceChildren(...links);
  signOutButton.hidden = false;
}

function signIn(message = "") {
  leave();
  nav.replaceChildren();
  signOutButton.hidden = true;
  updated.textContent = "";
  clearProblem();
  showSignIn(main, { message, onSignedIn: open });
}

function leave() {
  current?.view.leave?.();
  current = null;
}

/** Show the page the URL names. */
function open() {
  if (!apiKey()) {
    signIn();
    return;
  }
  const { parts, params } = currentRoute();
  const page = pageFor(parts);
  leave();
  const root = h("section", { class: `page page-${page.name}` });
  main.replaceChildren(root);
  showMenu(page);
  current = { page, view: page.mount(root, parts, params, { refresh }) };
  refresh();
}

/** Refresh the current page now, or right after the refresh under way. */
async function refresh() {
  const view = current?.view;
  if (!view) {
    return;
  }
  if (running === view) {
    again = true;
    return;
  }
  running = view;
  again = false;
  try {
    await view.refresh();
    clearProblem();
    updated.textContent = `Updated ${timeOfDay(new Date())}`;
    if (!painted) {
      painted = true;
      performance.mark("console:data"); // the first page with data: what the benchmark reads
    }
  } catch (error) {
    failed(error);
  } finally {
    running = null;
  }
  if (again && current?.view === view) {
    await refresh();
  }
}

function failed(error) {
  if (!(error instanceof ApiError)) {
    showProblem(`The console failed: ${error.message}. Reload the page to start again.`);
    throw error;
  }
  if (error.status === 401) {
    forgetKey();
    signIn("The API no longer accepts your key (revoked?): sign in again.");
  } else if (error.status === 0) {
    showProblem(
      `The API does not answer (${window.location.host}); showing what it last said and` +
        ` trying again every ${REFRESH_MS / 1000} s.`,
    );
  } else if (error.status === 429) {
    showProblem(`Your key is over its request rate; trying again in ${REFRESH_MS / 1000} s.`);
  } else if (error.status === 503) {
    showProblem(`The API's database is unavailable (${error.message}); trying again.`);
  } else {
    showProblem(`The API answered ${error.status}: ${error.message}`);
  }
}

signOutButton.addEventListener("click", () => {
  forgetKey();
  signIn();
});
window.addEventListener("hashchange", open);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    refresh();
  }
});
// A hidden tab does not poll the API.
setInterval(() => {
  if (!document.hidden) {
    refresh();
  }
}, REFRESH_MS);
open();
