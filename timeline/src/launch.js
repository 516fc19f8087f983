// The SMART launch URL: the EHR opens it with ?iss=...&launch=...; fhirclient reads the
// server's SMART configuration and sends the browser to its authorization endpoint, with
// PKCE (S256) required, asking only for the scopes the service is configured with.
import FHIR from "fhirclient";
import { readConfig, showProblem } from "./page.js";

async function launch() {
  const params = new URLSearchParams(window.location.search);
  if (!params.get("iss") || !params.get("launch")) {
    throw new Error("Open the timeline from the EHR (from the card's link): it needs the " +
                    "EHR's iss and launch parameters.");
  }
  const config = await readConfig();
  await FHIR.oauth2.authorize({
    clientId: config.clientId,
    scope: config.scope,
    redirectUri: "index.html",
    pkceMode: "required",
  });
}

launch().catch((error) => showProblem(`The timeline could not start: ${error.message}`));
