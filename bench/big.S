/* A large .text for the patch-time benchmark (run.sh builds it with
 * -DBIG_GROUPS=N; each group is 256 functions of 48 bytes, 12 KiB, so
 * N = 3400 gives about 40 MB of code).
 *
 * The code is never run except `big_probe`; it is there so that dfpatch's
 * linear disassembly of the executable sections has tens of MB of realistic
 * instructions to decode: prologues and epilogues, ModRM/SIB addressing,
 * imm32 operands, conditional branches, `call rel32` to the next function,
 * NOP padding to 16 bytes, and in every group one `-fno-plt`-style
 * `call *SYM@GOTPCREL(%rip)` through the GOT slot of a monitored function
 * (mmap, open, system in turn), which dfpatch must find and rewrite.
 */
#ifndef BIG_GROUPS
#define BIG_GROUPS 3400
#endif

        .text

/* One ordinary function (exactly 48 bytes with its padding). Like compiled
 * code, every function has call frame information, so the file has an
 * .eh_frame_hdr search table listing each function's start (assemble with
 * -DBIG_NO_CFI for the worst case: one 40 MB function with no known starts). */
        .macro fn
#ifndef BIG_NO_CFI
        .cfi_startproc
#endif
        push    %rbp
        mov     %rsp, %rbp
        push    %rbx
        mov     %edi, %ebx
        lea     0x11(%rbx,%rbx,2), %eax
        add     $0x12345, %eax
        imul    $0x45d9f3b, %eax, %eax
        cmp     $0x100, %eax
        jb      1f
        mov     %eax, %edi
        call    .Lnext\@
1:      pop     %rbx
        pop     %rbp
        ret
#ifndef BIG_NO_CFI
        .cfi_endproc
#endif
        .p2align 4
.Lnext\@:
        .endm

/* A function calling a monitored import through its GOT slot. */
        .macro fn_got sym
#ifndef BIG_NO_CFI
        .cfi_startproc
#endif
        push    %rbp
        mov     %rsp, %rbp
        mov     %edi, %esi
        xor     %edi, %edi
        mov     $3, %edx
        call    *\sym@GOTPCREL(%rip)
        pop     %rbp
        ret
#ifndef BIG_NO_CFI
        .cfi_endproc
#endif
        .p2align 4
        .endm

        .macro group sym
        .rept   255
        fn
        .endr
        fn_got  \sym
        .endm

        .globl  big_code
        .type   big_code, @function
big_code:
        .rept   BIG_GROUPS / 3
        group   mmap
        group   open
        group   system
        .endr
        ret
        .size   big_code, . - big_code

/* void *big_probe(void): mmap of one PROT_READ|PROT_EXEC anonymous page,
 * called through the GOT from inside the big section; the one piece of
 * this file that runs. Returns MAP_FAILED or the page. */
        .globl  big_probe
        .type   big_probe, @function
big_probe:
        sub     $8, %rsp
        xor     %edi, %edi
        mov     $4096, %esi
        mov     $5, %edx                /* PROT_READ|PROT_EXEC */
        mov     $0x22, %ecx             /* MAP_PRIVATE|MAP_ANONYMOUS */
        mov     $-1, %r8d
        xor     %r9d, %r9d
        call    *mmap@GOTPCREL(%rip)
        add     $8, %rsp
        ret
        .size   big_probe, . - big_probe

        .section .note.GNU-stack, "", @progbits
