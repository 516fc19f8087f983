// The redirect URI: complete the authorization (fhirclient exchanges the code, with the
// PKCE verifier, at the EHR's token endpoint), read the record with the granted token,
// forget the authorization, screen the record through the service, draw the timeline.
import FHIR from "fhirclient";
import { forgetAuthorization, readConfig, showProblem, showStatus } from "./page.js";
import { cardContext, readRecord } from "./record.js";
import { renderTimeline } from "./render.js";
import { screenRecord } from "./screen.js";

async function run() {
  const config = await readConfig();
  let client;
  try {
    client = await FHIR.oauth2.ready();
  } catch (error) {
    forgetAuthorization();
    throw new Error(`The EHR did not authorize the timeline (${error.message}). ` +
                    "No patient data was read.");
  }
  let record;
  try {
    record = await readRecord(client, config);
  } finally {
    forgetAuthorization();
  }
  showStatus("Screening the record…");
  const answer = await screenRecord(record.bundle, cardContext(client));
  const account = answer.results[0];
  if (!account) throw new Error("the service found no patient to screen in the record");
  renderTimeline(document.getElementById("timeline"),
                 { account, patient: record.patient, rules: answer.rules });
  showStatus("");
}

run().catch((error) => showProblem(error.message));
