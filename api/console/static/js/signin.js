// Sign-in: the key is checked against the API once, then kept for this tab only.

import { getJson } from "./api.js";
import { h } from "./dom.js";
import { keepKey } from "./session.js";

function hint() {
  return h(
    "p",
    { class: "hint" },
    "Use a key with read scope: ",
    h("code", {}, "python -m api create-key --scope read --name console"),
    ". make demo prints an admin key (",
    h("code", {}, "API_ADMIN_KEY=…"),
    "), which also shows dead letters. The key stays in this tab only.",
  );
}

/** What went wrong with a key, in words for the person typing it. */
export function explain(error) {
  switch (error.status) {
    case 401:
      return (
        "Wrong key: the API does not know this key, or it was revoked." +
        " Check it and try again."
      );
    case 403:
      return "This key may not read: use a key with read or admin scope.";
    case 429:
      return `Too many tries with this key: wait ${error.retryAfterS ?? "a few"} s and try again.`;
    case 503:
      return "The API answers but its database does not: try again in a moment.";
    case 0:
      return `The API at ${window.location.host} does not answer: is it running?`;
    default:
      return `The API refused the key: ${error.message}`;
  }
}

/** Show the sign-in form in `root`, with `message` if any; `onSignedIn` runs once it worked. */
export function showSignIn(root, { message = "", onSignedIn }) {
  const input = h("input", {
    id: "api-key",
    type: "password",
    name: "api-key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "ak_...",
  });
  const button = h("button", { type: "submit", id: "sign-in" }, "Sign in");
  const note = h("p", { id: "sign-in-message", class: "message", role: "alert" }, message);
  note.hidden = !message;
  const form = h(
    "form",
    { class: "sign-in", method: "post" },
    h("h1", {}, "Sign in"),
    h("label", { for: "api-key" }, "API key"),
    input,
    button,
    note,
    hint(),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    button.disabled = true;
    note.hidden = true;
    try {
      await getJson("/v1/fleet", {}, key);
      keepKey(key);
      onSignedIn();
    } catch (error) {
      note.textContent = explain(error);
      note.hidden = false;
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  root.replaceChildren(form);
  input.focus();
}
