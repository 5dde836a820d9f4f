import { beforeAll, describe, expect, it, vi } from 'vitest';
import { Tree } from 'web-tree-sitter';
import type { CodeParser, ParsedFile, ParsedSymbol } from '../ports/code-parser.ts';
import { createTreeSitterParser } from './tree-sitter-parser.ts';

let parser: CodeParser;
beforeAll(async () => {
  parser = await createTreeSitterParser();
});

function sym(file: ParsedFile, qualifiedName: string): ParsedSymbol {
  const s = file.symbols.find((x) => x.qualifiedName === qualifiedName);
  if (s === undefined)
    throw new Error(`no symbol ${qualifiedName} in ${file.symbols.map((x) => x.qualifiedName).join(', ')}`);
  return s;
}

/** References as `kind name [qualifier] @ enclosing`, for compact assertions. */
const refs = (file: ParsedFile): string[] =>
  file.references.map(
    (r) =>
      `${r.kind} ${r.name}${r.qualifier === undefined ? '' : ` [${r.qualifier}]`} @ ${
        r.enclosing === undefined ? '-' : file.symbols[r.enclosing]?.qualifiedName
      }`,
  );

const parentName = (file: ParsedFile, s: ParsedSymbol): string | undefined =>
  s.parent === undefined ? undefined : file.symbols[s.parent]?.qualifiedName;

describe('createTreeSitterParser', () => {
  describe('languageOf', () => {
    it('maps extensions to languages and ignores the rest', () => {
      expect(parser.languageOf('src/a.ts')).toBe('typescript');
      expect(parser.languageOf('types/index.d.ts')).toBe('typescript');
      expect(parser.languageOf('a.mts')).toBe('typescript');
      expect(parser.languageOf('ui/App.tsx')).toBe('tsx');
      expect(parser.languageOf('x.JS')).toBe('javascript');
      expect(parser.languageOf('x.cjs')).toBe('javascript');
      expect(parser.languageOf('x.jsx')).toBe('javascript');
      expect(parser.languageOf('m.py')).toBe('python');
      expect(parser.languageOf('main.go')).toBe('go');
      expect(parser.languageOf('A.java')).toBe('java');
      expect(parser.languageOf('lib.rs')).toBe('rust');
      expect(parser.languageOf('README.md')).toBeUndefined();
      expect(parser.languageOf('Makefile')).toBeUndefined();
    });
  });

  describe('typescript', () => {
    const source = `import type { Config } from './config.ts';
import { type Logger, createLogger as makeLogger } from '@app/log';
import Default, * as utils from 'utils';
import './polyfill';
export * from './errors';
export * as ns from './ns';
export { helper as assist } from './helper';
const lazy = await import('./lazy');

/**
 * A cache of parsed things.
 * @public
 */
export class Cache<T> extends Base.Store<T> implements Disposable, ns.Sized {
  /** How many entries. */
  size = 0;
  private readonly secret = 1;
  #hidden = 2;

  constructor(private readonly log: Logger) {
    super();
  }

  /** Gets one entry. */
  get(key: string): T | undefined {
    this.log.debug('get');
    return lookup(this.entries, key);
  }

  private evict(): void {}
}

export interface Store extends Sized<string> {
  get(key: string): unknown;
}

export type Key = string | number;
export enum Mode { Fast, Slow }

function lookup(entries: Map<string, unknown>, key: string) {
  return entries.get(key);
}

/** Builds a cache. */
export const build = async (config: Config): Promise<Cache<string>> => {
  return new Cache(makeLogger(config));
};

export default Cache;
export { lookup };
`;
    let file: ParsedFile;
    beforeAll(() => {
      file = parser.parse('typescript', source);
    });

    it('finds classes, members, interfaces, types, enums and functions with qualified names', () => {
      expect(file.errorCount).toBe(0);
      expect(sym(file, 'Cache').kind).toBe('class');
      expect(sym(file, 'Cache.get').kind).toBe('method');
      expect(sym(file, 'Cache.size').kind).toBe('field');
      expect(sym(file, 'Store').kind).toBe('interface');
      expect(sym(file, 'Store.get').kind).toBe('method');
      expect(sym(file, 'Key').kind).toBe('type');
      expect(sym(file, 'Mode').kind).toBe('enum');
      expect(sym(file, 'lookup').kind).toBe('function');
      expect(sym(file, 'build').kind).toBe('function');
      expect(sym(file, 'lazy').kind).toBe('constant');
      expect(parentName(file, sym(file, 'Cache.get'))).toBe('Cache');
      expect(sym(file, 'Cache').parent).toBeUndefined();
    });

    it('marks exports: export keyword, export lists, default exports and non-private members', () => {
      expect(sym(file, 'Cache').exported).toBe(true);
      expect(sym(file, 'Cache.get').exported).toBe(true);
      expect(sym(file, 'Cache.evict').exported).toBe(false);
      expect(sym(file, 'Cache.secret').exported).toBe(false);
      expect(sym(file, 'Cache.#hidden').exported).toBe(false);
      expect(sym(file, 'lookup').exported).toBe(true); // via `export { lookup }`
      expect(sym(file, 'build').exported).toBe(true);
      expect(sym(file, 'lazy').exported).toBe(false);
    });

    it('keeps JSDoc (also before `export`), signatures and spans', () => {
      const cache = sym(file, 'Cache');
      expect(cache.doc).toBe('A cache of parsed things.\n@public');
      expect(cache.signature).toBe('class Cache<T> extends Base.Store<T> implements Disposable, ns.Sized');
      expect(cache.span.startLine).toBe(13);
      expect(cache.span.endLine).toBe(30);
      expect(cache.nameSpan).toEqual({ startLine: 13, startColumn: 13, endLine: 13, endColumn: 18 });
      expect(sym(file, 'Cache.get').doc).toBe('Gets one entry.');
      expect(sym(file, 'Cache.get').signature).toBe('get(key: string): T | undefined');
      expect(sym(file, 'Cache.size').doc).toBe('How many entries.');
      expect(sym(file, 'build').signature).toBe('const build = async (config: Config): Promise<Cache<string>> =>');
      expect(sym(file, 'build').doc).toBe('Builds a cache.');
      expect(sym(file, 'lookup').doc).toBeUndefined();
    });

    it('reports calls with receivers, heritage and type references with the enclosing symbol', () => {
      const r = refs(file);
      expect(r).toContain('extends Store [Base] @ Cache');
      expect(r).toContain('implements Disposable @ Cache');
      expect(r).toContain('implements Sized [ns] @ Cache');
      expect(r).toContain('extends Sized @ Store');
      expect(r).toContain('call debug [this.log] @ Cache.get');
      expect(r).toContain('call lookup @ Cache.get');
      expect(r).toContain('call get [entries] @ lookup');
      expect(r).toContain('reference Cache @ build');
      expect(r).toContain('call makeLogger @ build');
      expect(r).toContain('type Config @ build');
      expect(r).toContain('type Logger @ Cache');
      // Declarations are not references to themselves; type parameters are not references.
      expect(r).not.toContain('type Cache @ Cache');
      expect(r).toContain('type Cache @ build'); // Promise<Cache<string>>
      expect(r.filter((x) => x === 'type T @ Cache')).toHaveLength(1); // Base.Store<T>, not Cache<T>
      expect(r.filter((x) => x === 'type T @ Cache.get')).toHaveLength(1);
    });

    it('reads imports and re-exports with names, aliases and type-only flags', () => {
      const byModule = Object.fromEntries(file.imports.map((i) => [i.module, i]));
      expect(byModule['./config.ts']).toMatchObject({ names: [{ name: 'Config' }], typeOnly: true });
      expect(byModule['@app/log']).toMatchObject({
        names: [
          { name: 'Logger', alias: undefined },
          { name: 'createLogger', alias: 'makeLogger' },
        ],
        typeOnly: false,
      });
      expect(byModule.utils?.names).toEqual([
        { name: 'default', alias: 'Default' },
        { name: '*', alias: 'utils' },
      ]);
      expect(byModule['./polyfill']?.names).toEqual([]);
      expect(byModule['./errors']?.names).toEqual([{ name: '*', alias: undefined }]);
      expect(byModule['./ns']?.names).toEqual([{ name: '*', alias: 'ns' }]);
      expect(byModule['./helper']?.names).toEqual([{ name: 'helper', alias: 'assist' }]);
      expect(byModule['./lazy']?.names).toEqual([{ name: '*', alias: undefined }]);
      expect(byModule['./config.ts']?.span.startLine).toBe(0);
      expect(file.imports).toHaveLength(8);
    });
  });

  describe('tsx', () => {
    it('parses JSX and references capitalised components', () => {
      const file = parser.parse(
        'tsx',
        `import { Layout } from './layout';
export function App({ title }: { title: string }) {
  return <Layout title={title}><Card /><div /></Layout>;
}
`,
      );
      expect(file.errorCount).toBe(0);
      expect(sym(file, 'App')).toMatchObject({ kind: 'function', exported: true });
      expect(refs(file)).toEqual(expect.arrayContaining(['reference Layout @ App', 'reference Card @ App']));
      expect(refs(file).some((r) => r.includes(' div '))).toBe(false);
    });
  });

  describe('javascript', () => {
    const source = `'use strict';
const path = require('path');
const { readFile, writeFile: write } = require('node:fs/promises');

/** Adds two numbers. */
function add(a, b) {
  return helper.sum(a, b);
}

class Counter extends EventEmitter {
  #n = 0;
  static create() { return new Counter(); }
  inc() { this.emit('inc'); }
}

const api = {
  get: (id) => fetch(id),
};

exports.run = function run() { add(1, 2); };
module.exports = { add, Counter };
`;
    let file: ParsedFile;
    beforeAll(() => {
      file = parser.parse('javascript', source);
    });

    it('finds functions, classes, methods, object members and CommonJS exports', () => {
      expect(file.errorCount).toBe(0);
      expect(sym(file, 'add')).toMatchObject({ kind: 'function', exported: true, doc: 'Adds two numbers.' });
      expect(sym(file, 'add').signature).toBe('function add(a, b)');
      expect(sym(file, 'Counter')).toMatchObject({ kind: 'class', exported: true });
      expect(sym(file, 'Counter.create').kind).toBe('method');
      expect(sym(file, 'Counter.#n').kind).toBe('field');
      expect(sym(file, 'api.get')).toMatchObject({ kind: 'function', exported: false });
      expect(sym(file, 'run')).toMatchObject({ kind: 'function', exported: true });
      expect(file.symbols.filter((s) => s.name === 'run')).toHaveLength(1);
    });

    it('reports calls, constructor references and extends', () => {
      expect(refs(file)).toEqual(
        expect.arrayContaining([
          'call sum [helper] @ add',
          'extends EventEmitter @ Counter',
          'reference Counter @ Counter.create',
          'call emit [this] @ Counter.inc',
          'call fetch @ api.get',
          'call add @ run',
        ]),
      );
      // require() is an import, not a call.
      expect(refs(file).some((r) => r.startsWith('call require'))).toBe(false);
    });

    it('reads require() bindings', () => {
      expect(file.imports.map((i) => [i.module, i.names])).toEqual([
        ['path', [{ name: '*', alias: 'path' }]],
        [
          'node:fs/promises',
          [
            { name: 'readFile', alias: undefined },
            { name: 'writeFile', alias: 'write' },
          ],
        ],
      ]);
    });
  });

  describe('python', () => {
    const source = `import os.path as osp, sys
from ..pkg.mod import (alpha as a, beta)
from . import sibling
from typing import *

MAX = 10
_private = 1

class Store(Base, abc.ABC, metaclass=Meta):
    """A store.

    Keeps things.
    """

    def __init__(self, path: str) -> None:
        self.path = osp.join(path, "x")

    @property
    def size(self) -> int:
        '''Size.'''
        return len(self.items)

    def _hidden(self):
        def inner():
            helper()
        return inner
`;
    let file: ParsedFile;
    beforeAll(() => {
      file = parser.parse('python', source);
    });

    it('finds classes, methods, nested functions and module constants with docstrings', () => {
      expect(file.errorCount).toBe(0);
      expect(sym(file, 'Store')).toMatchObject({ kind: 'class', exported: true, doc: 'A store.\n\nKeeps things.' });
      expect(sym(file, 'Store').signature).toBe('class Store(Base, abc.ABC, metaclass=Meta)');
      expect(sym(file, 'Store.size')).toMatchObject({ kind: 'method', exported: true, doc: 'Size.' });
      expect(sym(file, 'Store.size').signature).toBe('def size(self) -> int');
      expect(sym(file, 'Store.size').span.startLine).toBe(17); // the decorator belongs to the definition
      expect(sym(file, 'Store.__init__').exported).toBe(true);
      expect(sym(file, 'Store._hidden').exported).toBe(false);
      expect(sym(file, 'Store._hidden.inner')).toMatchObject({ kind: 'function', exported: false });
      expect(sym(file, 'MAX')).toMatchObject({ kind: 'constant', exported: true });
      expect(sym(file, '_private').exported).toBe(false);
    });

    it('reports base classes and calls with receivers', () => {
      expect(refs(file)).toEqual(
        expect.arrayContaining([
          'extends Base @ Store',
          'extends ABC [abc] @ Store',
          'call join [osp] @ Store.__init__',
          'call helper @ Store._hidden.inner',
        ]),
      );
      expect(refs(file).some((r) => r.includes('Meta'))).toBe(false);
    });

    it('reads imports, keeping relative dots', () => {
      expect(file.imports.map((i) => [i.module, i.names])).toEqual([
        ['os.path', [{ name: '*', alias: 'osp' }]],
        ['sys', [{ name: '*', alias: undefined }]],
        [
          '..pkg.mod',
          [
            { name: 'alpha', alias: 'a' },
            { name: 'beta', alias: undefined },
          ],
        ],
        ['.', [{ name: 'sibling', alias: undefined }]],
        ['typing', [{ name: '*', alias: undefined }]],
      ]);
    });
  });

  describe('go', () => {
    const source = `package store

import (
	"fmt"
	log "github.com/sirupsen/logrus"
	_ "embed"
)

// Store keeps things.
// It is safe for concurrent use.
type Store struct {
	sync.Mutex
	items map[string]int
}

// Reader reads.
type Reader interface {
	io.Closer
	Read(p []byte) (int, error)
}

const Max = 10

// Get returns one item.
func (s *Store) Get(key string) (int, error) {
	log.Info("get")
	return s.items[key], fmt.Errorf("x")
}

func newStore() *Store { return &Store{} }

func (x *Other[K]) Put() {}
`;
    let file: ParsedFile;
    beforeAll(() => {
      file = parser.parse('go', source);
    });

    it('qualifies methods by receiver type and exports capitalised names', () => {
      expect(file.errorCount).toBe(0);
      expect(sym(file, 'Store')).toMatchObject({ kind: 'class', exported: true });
      expect(sym(file, 'Store').doc).toBe('Store keeps things.\nIt is safe for concurrent use.');
      expect(sym(file, 'Store').signature).toBe('type Store struct');
      expect(sym(file, 'Reader').kind).toBe('interface');
      expect(sym(file, 'Reader.Read').kind).toBe('method');
      const get = sym(file, 'Store.Get');
      expect(get).toMatchObject({ kind: 'method', exported: true, doc: 'Get returns one item.' });
      expect(get.signature).toBe('func (s *Store) Get(key string) (int, error)');
      expect(parentName(file, get)).toBe('Store');
      expect(sym(file, 'newStore')).toMatchObject({ kind: 'function', exported: false });
      expect(sym(file, 'Other.Put')).toMatchObject({ kind: 'method', parent: undefined });
      expect(sym(file, 'Max')).toMatchObject({ kind: 'constant', exported: true, signature: 'const Max = 10' });
    });

    it('reports package calls, embedding and non-builtin types', () => {
      const r = refs(file);
      expect(r).toEqual(
        expect.arrayContaining([
          'call Info [log] @ Store.Get',
          'call Errorf [fmt] @ Store.Get',
          'extends Mutex [sync] @ Store',
          'extends Closer [io] @ Reader',
          'type Store @ newStore',
        ]),
      );
      expect(r.some((x) => x.startsWith('type string') || x.startsWith('type error'))).toBe(false);
    });

    it('reads import specs with aliases', () => {
      expect(file.imports.map((i) => [i.module, i.names])).toEqual([
        ['fmt', [{ name: '*', alias: undefined }]],
        ['github.com/sirupsen/logrus', [{ name: '*', alias: 'log' }]],
        ['embed', []],
      ]);
    });
  });

  describe('java', () => {
    const source = `package com.example.store;

import java.util.List;
import java.util.concurrent.*;
import static org.junit.Assert.assertEquals;

/**
 * A store.
 */
@Service
public class Store<T> extends AbstractStore<T> implements Closeable, com.x.Sized {
    private final List<T> items = new ArrayList<>();

    /**
     * Gets one.
     */
    @Override
    public T get(int i) {
        log.info("get");
        return items.get(i);
    }

    void helper() { new Helper().run(); }
}

interface Sized extends Countable { int size(); }

enum Color { RED, GREEN }
`;
    let file: ParsedFile;
    beforeAll(() => {
      file = parser.parse('java', source);
    });

    it('finds classes, methods, fields, interfaces and enums with Javadoc and public flags', () => {
      expect(file.errorCount).toBe(0);
      expect(sym(file, 'Store')).toMatchObject({ kind: 'class', exported: true, doc: 'A store.' });
      expect(sym(file, 'Store').signature).toBe(
        'public class Store<T> extends AbstractStore<T> implements Closeable, com.x.Sized',
      );
      expect(sym(file, 'Store.get')).toMatchObject({ kind: 'method', exported: true, doc: 'Gets one.' });
      expect(sym(file, 'Store.get').signature).toBe('public T get(int i)');
      expect(sym(file, 'Store.helper').exported).toBe(false);
      expect(sym(file, 'Store.items')).toMatchObject({ kind: 'field', exported: false });
      expect(sym(file, 'Sized')).toMatchObject({ kind: 'interface', exported: false });
      expect(sym(file, 'Sized.size').kind).toBe('method');
      expect(sym(file, 'Color').kind).toBe('enum');
    });

    it('reports extends, implements and calls', () => {
      const r = refs(file);
      expect(r).toEqual(
        expect.arrayContaining([
          'extends AbstractStore @ Store',
          'implements Closeable @ Store',
          'implements Sized [com.x] @ Store',
          'extends Countable @ Sized',
          'call info [log] @ Store.get',
          'call run [new Helper()] @ Store.helper',
          'reference Helper @ Store.helper',
        ]),
      );
      expect(r.some((x) => x.startsWith('type com') || x.startsWith('type x '))).toBe(false);
    });

    it('reads imports as package + class', () => {
      expect(file.imports.map((i) => [i.module, i.names])).toEqual([
        ['java.util', [{ name: 'List', alias: undefined }]],
        ['java.util.concurrent', [{ name: '*', alias: undefined }]],
        ['org.junit.Assert', [{ name: 'assertEquals', alias: undefined }]],
      ]);
    });
  });

  describe('rust', () => {
    const source = `use std::collections::{HashMap, hash_map::Entry as E};
use crate::a::{b, c as d, e::{f, self}, *};
use serde;

/// A store.
/// Keeps things.
#[derive(Debug)]
pub struct Store<T> {
    items: HashMap<String, T>,
}

pub trait Sized: Countable {
    /// Size.
    fn size(&self) -> usize;
}

impl<T> Store<T> {
    /// Creates.
    pub fn new() -> Self {
        Store { items: HashMap::new() }
    }
    fn helper(&self) { self.items.len(); }
}

impl<T> Sized for Store<T> {
    fn size(&self) -> usize { self.items.len() }
}

pub(crate) fn internal() {}
mod inner { fn f() {} }
pub enum Color { Red }
`;
    let file: ParsedFile;
    beforeAll(() => {
      file = parser.parse('rust', source);
    });

    it('qualifies impl methods by type and reads pub and /// docs', () => {
      expect(file.errorCount).toBe(0);
      expect(sym(file, 'Store')).toMatchObject({ kind: 'class', exported: true, doc: 'A store.\nKeeps things.' });
      expect(sym(file, 'Store').signature).toBe('pub struct Store<T>');
      const created = sym(file, 'Store.new');
      expect(created).toMatchObject({ kind: 'method', exported: true, doc: 'Creates.' });
      expect(created.signature).toBe('pub fn new() -> Self');
      expect(parentName(file, created)).toBe('Store');
      expect(sym(file, 'Store.helper').exported).toBe(false);
      expect(sym(file, 'Sized')).toMatchObject({ kind: 'interface', exported: true });
      expect(sym(file, 'Sized.size')).toMatchObject({ kind: 'method', exported: true, doc: 'Size.' });
      expect(file.symbols.filter((s) => s.qualifiedName === 'Store.size')).toHaveLength(1);
      expect(sym(file, 'internal')).toMatchObject({ kind: 'function', exported: false });
      expect(sym(file, 'inner.f').kind).toBe('function');
      expect(sym(file, 'Color').kind).toBe('enum');
    });

    it('reports trait implementations, bounds and calls', () => {
      expect(refs(file)).toEqual(
        expect.arrayContaining([
          'implements Sized @ Store',
          'extends Countable @ Sized',
          'call new [HashMap] @ Store.new',
          'call len [self.items] @ Store.helper',
        ]),
      );
    });

    it('flattens use trees', () => {
      expect(file.imports.map((i) => [i.module, i.names])).toEqual([
        ['std::collections', [{ name: 'HashMap', alias: undefined }]],
        ['std::collections::hash_map', [{ name: 'Entry', alias: 'E' }]],
        [
          'crate::a',
          [
            { name: 'b', alias: undefined },
            { name: 'c', alias: 'd' },
            { name: '*', alias: undefined },
          ],
        ],
        [
          'crate::a::e',
          [
            { name: 'f', alias: undefined },
            { name: 'self', alias: undefined },
          ],
        ],
        ['serde', [{ name: '*', alias: undefined }]],
      ]);
    });
  });

  describe('errors and resources', () => {
    it('counts syntax errors and still indexes what parsed', () => {
      const file = parser.parse('typescript', 'export function ok() {}\nfunction broken( {\n');
      expect(file.errorCount).toBeGreaterThan(0);
      expect(sym(file, 'ok').exported).toBe(true);
      expect(parser.parse('typescript', 'export const a = 1;\n').errorCount).toBe(0);
    });

    it('deletes every tree it parses', () => {
      const del = vi.spyOn(Tree.prototype, 'delete');
      try {
        for (let i = 0; i < 50; i++) parser.parse('javascript', `function f${i}() { g(); }`);
        expect(() => parser.parse('python', 'def f(:\n')).not.toThrow();
        expect(del).toHaveBeenCalledTimes(51);
      } finally {
        del.mockRestore();
      }
    });
  });
});
