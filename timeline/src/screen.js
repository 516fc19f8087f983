// Screen the record through the service the app came from (same origin): the account of
// what counted, when, and why (POST /timeline/explain). The service stores nothing.

export async function screenRecord(bundle, { asOf } = {}) {
  const parameter = [{ name: "bundle", resource: bundle }];
  if (asOf) parameter.push({ name: "asOf", valueDate: asOf });
  const response = await fetch("explain", {
    method: "POST",
    headers: { "Content-Type": "application/fhir+json", Accept: "application/json" },
    body: JSON.stringify({ resourceType: "Parameters", parameter }),
    cache: "no-store",
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    throw new Error("the screening service requires a signed JWT for screening " +
                    "(IPEX_API_ISSUERS_FILE is set), which this app cannot present; " +
                    "ask the service's administrator");
  }
  if (!response.ok) {
    const why = body && typeof body.error === "string" ? body.error : `HTTP ${response.status}`;
    throw new Error(`the screening service could not screen the record: ${why}`);
  }
  return body;
}
