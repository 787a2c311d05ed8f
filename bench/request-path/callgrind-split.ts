/** Splits the instructions of a callgrind dump of a Node process by what V8 spent them on. */
import { execFileSync } from 'child_process';

/** Instructions of one dump: V8's garbage collector, its compilers (and parser), the rest. */
export interface InstructionSplit {
  /** Heap work: scavenges, marking, sweeping, compaction, remembered sets, free lists. */
  gc: number;
  /** Parsing and compiling JavaScript (bytecode, Sparkplug, Maglev, TurboFan/Turboshaft). */
  compile: number;
  /** Everything else: the program itself (JIT code, builtins, Node and libuv, the kernel interface). */
  program: number;
}

// NOTE: by C++ symbol. JIT code has none and counts as the program, as do V8's builtins and the
// allocation fast paths; an object's share of GC work shows up as `gc`.
const GC =
  /v8::internal::(Scavenger|ScavengeVisitor|MarkCompact|Marking|MainMarkingVisitor|MinorMarkSweep|MinorMS|IncrementalMarking|ConcurrentMarking|Sweeper|Evacuat|LiveObjectVisitor|RememberedSet|SlotSet|RecordMigratedSlot|FreeList|Heap::|HeapObject::SizeFromMap|PagedSpace|MemoryAllocator|ArrayBufferSweeper|IterateAndScavenge|BodyDescriptorBase::IteratePointers|WeakObjects|PointersUpdating|MemoryChunk|MutablePageMetadata|GCTracer|EphemeronHashTable|ObjectStatsCollector)|heap::base::|cppgc::/;
const COMPILE =
  /v8::internal::(compiler::|maglev::|baseline::|interpreter::Bytecode|Parser|ParserBase|PreParser|Scanner|BytecodeGenerator|Compiler::|OptimizedCompilationJob|Zone::|ZoneList|AstNodeFactory|Deoptimizer|SourcePosition|TurbofanCompilationJob|wasm::)/;

/**
 * Runs `callgrind_annotate` on `file` (one dump) and sorts every function's own instructions
 * into `gc`, `compile` or `program`. The three add up to the dump's total.
 */
export function splitDump(file: string): InstructionSplit {
  const out = execFileSync(
    'callgrind_annotate',
    ['--threshold=100', '--inclusive=no', '--auto=no', file],
    { maxBuffer: 256 * 1024 * 1024 },
  ).toString();
  const split: InstructionSplit = { gc: 0, compile: 0, program: 0 };
  let total = 0;
  for (const line of out.split('\n')) {
    const m = /^\s*([\d,]+) \([^)]*\)\s+(.*)$/.exec(line);
    if (!m) continue;
    const count = Number(m[1].replace(/,/g, ''));
    if (m[2].includes('PROGRAM TOTALS')) {
      total = count;
      continue;
    }
    if (GC.test(m[2])) split.gc += count;
    else if (COMPILE.test(m[2])) split.compile += count;
    else split.program += count;
  }
  // NOTE: callgrind_annotate may leave out functions it cannot name at all; they are the program's.
  split.program += Math.max(
    0,
    total - split.gc - split.compile - split.program,
  );
  return split;
}
