// A small consumer of the types openapi-typescript generates from
// /openapi.json, type-checked by `.ci/api-check` with `tsc --strict`: it
// fails to compile if the document loosens what it promises.
import createClient from "openapi-fetch";
import type { components, paths } from "./api";

type Schemas = components["schemas"];
type Key = Schemas["KeyObject"];

// Always sent, possibly null: required, not optional.
type IsRequired<T, K extends keyof T> = {} extends Pick<T, K> ? false : true;
export const alwaysSent: [
  IsRequired<Key, "last_used_at">,
  IsRequired<Key, "expires_at">,
  IsRequired<Key, "revokes_at">,
] = [true, true, true];
export const neverUsed: Key["last_used_at"] = null;

// Scopes are an enum, not any string.
export const scope: Schemas["Scope"] = "users:read";
// @ts-expect-error: not a scope
export const notAScope: Schemas["Scope"] = "users:delete";

// `param` is absent or a string, never null.
// @ts-expect-error: param is not nullable
export const nullParam: Schemas["ErrorDetail"]["param"] = null;

export async function firstKeyLastUsed(
  baseUrl: string,
  key: string,
  tenant: string,
): Promise<string | null> {
  const client = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${key}` },
  });
  const { data, error } = await client.GET("/v1/api-keys", {
    params: { header: { "X-Tenant-ID": tenant }, query: { limit: 10 } },
  });
  if (error) {
    const code: Schemas["ErrorCode"] = error.error.code;
    throw new Error(code);
  }
  const first: Key | undefined = data.data[0];
  return first ? first.last_used_at : null;
}
