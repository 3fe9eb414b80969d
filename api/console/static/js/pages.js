// The console's pages, in menu order. A page is an object:
//   name      its first path segment ("fleet" in #/fleet)
//   title     its menu entry; pages without one (a device) are reached by links
//   mount(root, parts, params, ctx)  builds the page in `root` and returns a view:
//     { refresh(): Promise }  called at once and every few seconds; it throws ApiError
//                             for the console to show (a page handles what it expects)
//     { leave?(): void }      called when another page replaces it
// ctx.refresh() asks for a refresh now (after the user changed a filter, say).

import { alertsPage } from "./pages/alerts.js";
import { devicePage } from "./pages/device.js";
import { fleetPage } from "./pages/fleet.js";
import { rejectsPage } from "./pages/rejects.js";

export const PAGES = [fleetPage, alertsPage, rejectsPage, devicePage];

/** The page a route names; the fleet for anything unknown. */
export function pageFor(parts) {
  return PAGES.find((page) => page.name === parts[0]) ?? fleetPage;
}
