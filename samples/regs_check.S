/* Hand-written static program (no libc) checking that a rewritten `syscall`
 * instruction keeps everything a system call keeps: every register but rax,
 * rcx and r11, the flags, the vector registers, and the 128-byte red zone
 * below the stack pointer (which leaf code may use without moving rsp).
 *   cc -nostdlib -static -o regs samples/regs_check.S ; ./regs ; echo $?
 * Exit status: 42 when all is kept and open failed with ENOENT, 43 when all
 * is kept and it failed with EPERM (refused); 10 + n when check n failed. The system
 * call is open("/nonexistent-dfpatch-regs", O_RDONLY): -ENOENT (-2) for real,
 * -EPERM (-1) when a policy refuses it. */
        .text
        .globl _start
_start:
        /* Red zone: 16 quadwords below rsp. */
        xor     %ecx, %ecx
1:      lea     0x5a00(%rcx), %rax
        mov     %rax, -128(%rsp,%rcx,8)
        inc     %ecx
        cmp     $16, %ecx
        jne     1b
        mov     $0x1111111111111111, %rbx
        mov     $0x2222222222222222, %rbp
        mov     $0x3333333333333333, %r12
        mov     $0x4444444444444444, %r13
        mov     $0x5555555555555555, %r14
        mov     $0x6666666666666666, %r15
        mov     $0x7777777777777777, %r8
        mov     $0x0888888888888888, %r9
        mov     $0x0999999999999999, %r10
        mov     $0x0aaaaaaaaaaaaaaa, %rax
        movq    %rax, %xmm0
        movq    %rax, %xmm15
        mov     $0x0bbbbbbbbbbbbbbb, %rdx
        lea     path(%rip), %rdi
        xor     %esi, %esi
        std                             /* DF=1 and CF=1 must survive */
        stc
        mov     $2, %eax
        syscall
        jnc     fail1
        mov     %rax, %r11
        xor     %ecx, %ecx              /* the red zone, before anything pushes */
3:      lea     0x5a00(%rcx), %rax
        cmp     %rax, -128(%rsp,%rcx,8)
        jne     fail6
        inc     %ecx
        cmp     $16, %ecx
        jne     3b
        pushfq
        pop     %rcx
        bt      $10, %rcx               /* DF */
        jnc     fail1
        cld
        cmp     $-2, %r11               /* ENOENT, or EPERM when refused */
        je      2f
        cmp     $-1, %r11
        jne     fail2
2:      mov     $0x1111111111111111, %rcx
        cmp     %rcx, %rbx
        jne     fail3
        mov     $0x2222222222222222, %rcx
        cmp     %rcx, %rbp
        jne     fail3
        mov     $0x3333333333333333, %rcx
        cmp     %rcx, %r12
        jne     fail3
        mov     $0x4444444444444444, %rcx
        cmp     %rcx, %r13
        jne     fail3
        mov     $0x5555555555555555, %rcx
        cmp     %rcx, %r14
        jne     fail3
        mov     $0x6666666666666666, %rcx
        cmp     %rcx, %r15
        jne     fail3
        mov     $0x7777777777777777, %rcx
        cmp     %rcx, %r8
        jne     fail4
        mov     $0x0888888888888888, %rcx
        cmp     %rcx, %r9
        jne     fail4
        mov     $0x0999999999999999, %rcx
        cmp     %rcx, %r10
        jne     fail4
        mov     $0x0bbbbbbbbbbbbbbb, %rcx
        cmp     %rcx, %rdx
        jne     fail4
        lea     path(%rip), %rcx
        cmp     %rcx, %rdi
        jne     fail4
        test    %rsi, %rsi
        jne     fail4
        mov     $0x0aaaaaaaaaaaaaaa, %rcx
        movq    %xmm0, %rax
        cmp     %rcx, %rax
        jne     fail5
        movq    %xmm15, %rax
        cmp     %rcx, %rax
        jne     fail5
        mov     $42, %edi
        cmp     $-1, %r11
        jne     exit
        mov     $43, %edi
        jmp     exit
fail1:  mov     $11, %edi
        jmp     exit
fail2:  mov     $12, %edi
        jmp     exit
fail3:  mov     $13, %edi
        jmp     exit
fail4:  mov     $14, %edi
        jmp     exit
fail5:  mov     $15, %edi
        jmp     exit
fail6:  mov     $16, %edi
exit:   cld
        mov     $60, %eax
        syscall

        .section .rodata
path:   .asciz "/nonexistent-dfpatch-regs"
        .data
        .quad 0
        .section .note.GNU-stack,"",@progbits
