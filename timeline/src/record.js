// Read the child's record from the EHR with the granted token: the Patient, and every
// Condition, Observation and ServiceRequest of the patient (following next links up to
// the service's page limit), as one collection Bundle for the service to screen.

const TYPES = ["Condition", "Observation", "ServiceRequest"];

export async function readRecord(client, { maxPages }) {
  const patientId = client.patient.id;
  if (!patientId) throw new Error("the EHR gave no patient in the launch context");
  const patient = await client.patient.read();
  const searches = TYPES.map((type) =>
    client.request(`${type}?patient=${encodeURIComponent(patientId)}`,
                   { pageLimit: maxPages, flat: true }));
  const found = (await Promise.all(searches)).flat().filter((r) => r && r.resourceType);
  const base = client.state.serverUrl.replace(/\/+$/, "");
  const entries = [patient, ...found].map((resource) => ({
    fullUrl: `${base}/${resource.resourceType}/${resource.id}`,
    resource,
  }));
  return { patient, bundle: { resourceType: "Bundle", type: "collection", entry: entries } };
}

/** The card's appContext (CDS Hooks: a string the EHR hands over in the token response):
 * the screening date of the card, so the timeline shows what the card said. */
export function cardContext(client) {
  let context = client.state.tokenResponse?.appContext;
  if (typeof context === "string") {
    try {
      context = JSON.parse(context);
    } catch {
      return {};
    }
  }
  if (!context || typeof context !== "object") return {};
  const asOf = /^\d{4}-\d{2}-\d{2}$/.test(context.asOf ?? "") ? context.asOf : undefined;
  return { asOf, row: Number.isInteger(context.row) ? context.row : undefined };
}
