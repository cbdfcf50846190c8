/**
 * `capsa inspect`, `capsa container inspect` and `capsa image inspect`: the
 * details of containers or images as a JSON array, as Docker prints them.
 * Plain `inspect` looks each name up as a container first, then as an
 * image, as Docker does; `--type` limits it to one.
 */
import { ContainerInspectRequest, ImageInspectRequest } from '../protocol';
import { parseFlags } from './args';
import { errorMessage, type Command } from './command';
import { json } from './format';
import * as check from './validate';

type Kind = 'container' | 'image';

/** The not-found codes a lookup of the other kind may still answer. */
const NOT_FOUND = new Set(['E_CONTAINER_NOT_FOUND', 'E_IMAGE_NOT_FOUND']);
/** A name one kind cannot have (its params refused): not that kind's, perhaps the other's. */
const INVALID = new Set(['E_INVALID_ARGUMENT']);

export function inspectCommand(fixed?: Kind): Command {
  const verb = fixed ? `${fixed} inspect` : 'inspect';
  return async (argv, conn) => {
    const specs = fixed ? [] : [{ name: 'type', kind: 'value' as const, help: 'Only this kind: container or image' }];
    const { flags, positionals } = parseFlags(argv, specs, { stopAtPositional: false, verb });
    check.someArguments(verb, positionals);
    const type: Kind | undefined = fixed ?? (flags.type === undefined ? undefined : check.checkChoice('type', String(flags.type), ['container', 'image'] as const));
    const kinds: Kind[] = type ? [type] : ['container', 'image'];
    const c = await conn();
    const out: unknown[] = [];
    let status = 0;
    for (const name of positionals) {
      let found: unknown;
      let failure: unknown;
      for (const kind of kinds) {
        try {
          found = kind === 'container' ? await c.sendRequest(ContainerInspectRequest.type, { container: name }) : await c.sendRequest(ImageInspectRequest.type, { image: name });
          break;
        } catch (err) {
          const code = (err as { data?: { code?: string } })?.data?.code;
          failure = err;
          // "no such X", or a name that cannot be an X (`a/b` is no container name but may be an image's): look further.
          // Anything else (the helper gone, a refusal) is the answer.
          if (!code || !(NOT_FOUND.has(code) || INVALID.has(code))) break;
        }
      }
      if (found !== undefined) out.push(found);
      else {
        status = 1;
        const code = (failure as { data?: { code?: string } })?.data?.code;
        process.stderr.write(code && (NOT_FOUND.has(code) || INVALID.has(code)) ? `Error: No such ${type ?? 'object'}: ${name}\n` : `capsa: ${errorMessage(failure)}\n`);
      }
    }
    process.stdout.write(json(out) + '\n');
    return status;
  };
}
