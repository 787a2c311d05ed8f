import { readFileSync } from 'fs';
import { join } from 'path';
import { CONFIG_VARIABLES } from './env.schema';

describe('the README', () => {
  const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
  /** Variables named in the first cell of a README table row: "| `NAME`, `OTHER` | default |". */
  const documented = new Set(
    readme
      .split('\n')
      .filter((line) => line.startsWith('| '))
      .flatMap((line) =>
        [...line.split('|')[1].matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map(
          (m) => m[1],
        ),
      ),
  );

  it('should document every variable the config schema reads, in a table row', () => {
    expect(CONFIG_VARIABLES.filter((name) => !documented.has(name))).toEqual(
      [],
    );
  });
});
