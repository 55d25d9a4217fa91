// The calls every network registry offers in the SDK (grid.blocks, grid.vdags, grid.policies):
// create and update send the spec under `record`, delete and get the key under `key`; each
// answers the one record concerned.
export interface RegistryCalls<Spec, Rec> {
  create(spec: Spec): Promise<Rec>;
  update(spec: Spec): Promise<Rec>;
  delete(key: string): Promise<Rec>;
  get(key: string): Promise<Rec>;
}

type Op = 'create' | 'update' | 'delete' | 'get';

export function registryCalls<Spec, Rec>(ask: (request: { op: Op } & Record<string, unknown>) => Promise<Rec[]>, record: string, key: string): RegistryCalls<Spec, Rec> {
  const one = async (request: { op: Op } & Record<string, unknown>) => (await ask(request))[0]!;
  return {
    create: (spec) => one({ op: 'create', [record]: spec }),
    update: (spec) => one({ op: 'update', [record]: spec }),
    delete: (k) => one({ op: 'delete', [key]: k }),
    get: (k) => one({ op: 'get', [key]: k }),
  };
}
