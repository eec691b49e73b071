import { mkdir, mkdtemp, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A directory laid out the way the kubelet mounts a ConfigMap: the data in a timestamped
 * directory, `..data` a symlink to it, each key a symlink through `..data`. An update
 * writes a new directory and swaps `..data` by rename, atomically, as the kubelet does.
 */
export class MountedConfigMap {
  private generation = 0;
  private constructor(readonly dir: string) {}

  static async create(data?: Record<string, string>): Promise<MountedConfigMap> {
    const mount = new MountedConfigMap(await mkdtemp(join(tmpdir(), "schema-gate-mount-")));
    if (data) await mount.write(data);
    return mount;
  }

  async write(data: Record<string, string>): Promise<void> {
    const version = `..${Date.now()}_${++this.generation}`;
    await mkdir(join(this.dir, version));
    for (const [key, value] of Object.entries(data)) await writeFile(join(this.dir, version, key), value);
    const previous = await readlink(join(this.dir, "..data")).catch(() => undefined);
    await symlink(version, join(this.dir, "..data_tmp"));
    await rename(join(this.dir, "..data_tmp"), join(this.dir, "..data"));
    for (const key of Object.keys(data)) {
      await symlink(join("..data", key), join(this.dir, key)).catch(() => undefined);
    }
    if (previous) await rm(join(this.dir, previous), { recursive: true, force: true });
  }
}
