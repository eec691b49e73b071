import pg from "pg";

/**
 * Application sessions as the services hold them, named after them; the first sits idle in
 * a transaction that read the table (so a plain ALTER TABLE would wait for it).
 */
export async function openAppSessions(url: string, names: readonly string[]): Promise<pg.Client[]> {
  const clients = await Promise.all(
    names.map(async (name) => {
      const client = new pg.Client({ connectionString: url, application_name: name });
      client.on("error", () => undefined);
      await client.connect();
      return client;
    }),
  );
  await clients[0]!.query("BEGIN");
  await clients[0]!.query("SELECT count(*) FROM items");
  await clients[1]?.query("SELECT 1");
  return clients;
}
