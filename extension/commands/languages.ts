/**
 * Which command line runs a file of a given language inside the container.
 * No dependency on the vscode module.
 *
 * Templates use `${file}`, `${fileDirname}`, `${fileBasename}` and
 * `${fileBasenameNoExtension}` (container paths, shell-quoted when substituted),
 * the variables VS Code's tasks use.
 */

/** Defaults by VS Code language id; `capsa.runCommands` entries override them. */
export const DEFAULT_RUN_COMMANDS: Readonly<Record<string, string>> = {
  python: 'python3 ${file}',
  javascript: 'node ${file}',
  typescript: 'npx --yes tsx ${file}',
  shellscript: 'sh ${file}',
  go: 'go run ${file}',
  ruby: 'ruby ${file}',
  perl: 'perl ${file}',
  php: 'php ${file}',
  lua: 'lua ${file}',
  r: 'Rscript ${file}',
  java: 'java ${file}',
  c: 'cc -o /tmp/${fileBasenameNoExtension} ${file} && /tmp/${fileBasenameNoExtension}',
  cpp: 'c++ -o /tmp/${fileBasenameNoExtension} ${file} && /tmp/${fileBasenameNoExtension}',
  rust: 'rustc -o /tmp/${fileBasenameNoExtension} ${file} && /tmp/${fileBasenameNoExtension}',
  makefile: 'make -f ${file}',
  powershell: 'pwsh -File ${file}',
};

/** POSIX shell single-quoting, only when needed. */
export function shellQuote(s: string): string {
  if (s !== '' && /^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The interpreter named by a `#!` line, e.g. `/usr/bin/env bash`, or undefined. */
export function shebang(firstLine: string): string | undefined {
  const m = /^#!\s*(\S.*?)\s*$/.exec(firstLine);
  return m ? m[1] : undefined;
}

export interface RunTarget {
  languageId: string;
  /** Absolute path of the file inside the container (POSIX). */
  containerPath: string;
  /** The file's first line, to honour a shebang. */
  firstLine?: string;
}

/**
 * The shell command line that runs the file: a user mapping for the language
 * wins, then the file's shebang (for languages without a built-in default, and
 * for shell scripts so `#!/bin/bash` gets bash), then the defaults.
 * Returns undefined when nothing is known for the language.
 */
export function commandFor(target: RunTarget, user: Readonly<Record<string, string>> = {}): string | undefined {
  const template =
    user[target.languageId] ??
    (target.firstLine !== undefined && shebang(target.firstLine) && (target.languageId === 'shellscript' || !(target.languageId in DEFAULT_RUN_COMMANDS))
      ? `${shebang(target.firstLine)} \${file}`
      : DEFAULT_RUN_COMMANDS[target.languageId]);
  if (template === undefined) return undefined;
  return substitute(template, target.containerPath);
}

export function substitute(template: string, containerPath: string): string {
  const dir = containerPath.slice(0, containerPath.lastIndexOf('/')) || '/';
  const base = containerPath.slice(containerPath.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  const values: Record<string, string> = {
    file: containerPath,
    fileDirname: dir,
    fileBasename: base,
    fileBasenameNoExtension: dot > 0 ? base.slice(0, dot) : base,
  };
  return template.replace(/\$\{(\w+)\}/g, (whole, name: string) => (name in values ? shellQuote(values[name]) : whole));
}

/**
 * Maps a host path under the workspace folder to its container path; undefined
 * for a file outside the workspace (it is not mounted).
 */
export function containerPathOf(hostPath: string, hostFolder: string, containerFolder: string): string | undefined {
  const folder = hostFolder.replace(/\/+$/, '');
  if (hostPath !== folder && !hostPath.startsWith(folder + '/')) return undefined;
  return containerFolder.replace(/\/+$/, '') + hostPath.slice(folder.length);
}
