/**
 * How a window turns a namespace's maintenance mode on and off. `turnOn` answers whether
 * this window now owns the flag (it does not when someone had already turned it on by
 * hand), and `turnOff` only ever clears a flag the given owner set.
 */
export interface MaintenanceSwitch {
  turnOn(namespace: string, owner: string, message: string): Promise<{ owned: boolean }>;
  turnOff(namespace: string, owner: string): Promise<void>;
}

/** A switch that does nothing: for gates run without the maintenance feature. */
export const noMaintenance: MaintenanceSwitch = {
  turnOn: async () => ({ owned: false }),
  turnOff: async () => undefined,
};
