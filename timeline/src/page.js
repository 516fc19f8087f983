// Small helpers every page shares: the service's app settings, messages, DOM building.
// Text from the record only ever goes in through textContent (never innerHTML).

export async function readConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`the service's app settings (HTTP ${response.status})`);
  return response.json();
}

export function showStatus(text) {
  document.getElementById("status").textContent = text;
}

/** A clear message in place of everything else: no patient data stays on the page. */
export function showProblem(text) {
  const timeline = document.getElementById("timeline");
  if (timeline) {
    timeline.replaceChildren();
    timeline.hidden = true;
  }
  showStatus("");
  const problem = document.getElementById("problem");
  problem.replaceChildren(el("p", { className: "problem" }, text));
}

/** fhirclient keeps its authorization state (server URL, token response with the access
 * token and patient id, PKCE verifier) in sessionStorage under SMART_KEY and the key it
 * names. The timeline reads everything once, so it removes both as soon as the reads are
 * done (or failed): nothing is left in the browser even while the tab stays open. */
export function forgetAuthorization() {
  const raw = sessionStorage.getItem("SMART_KEY");
  if (raw) {
    try {
      sessionStorage.removeItem(JSON.parse(raw));
    } catch {
      sessionStorage.removeItem(raw);
    }
  }
  sessionStorage.removeItem("SMART_KEY");
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key in node && !key.includes("-")) node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
