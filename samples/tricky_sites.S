/* Hand-written static program (no libc) whose code has places dfpatch must
 * refuse to rewrite, next to places it can rewrite. Built with
 *   cc -nostdlib -static -o tricky samples/tricky_sites.S
 * It exits with status 42 when everything ran as written.
 *
 *  system   3 bytes long: too short for a 5-byte jump.
 *  connect  jumps back into its own first bytes: a branch target inside.
 *  listen   normal prologue: detoured.
 *  site_a   mov $39,%eax (getpid: not monitored); mov $2,%eax (open) ; syscall:
 *           moved with the mov before it.
 *  site_b   the syscall and the instruction after it are both branch targets,
 *           and the one before is a branch: refused.
 *  site_c   the number comes from a register: hooked, number read at run time.
 *  site_d   open's number with the upper half of %rax set (0x1_00000002): the
 *           kernel ignores that half, so this is open and must be hooked.
 */
        .text
        .globl _start
_start:
        call    listen
        call    connect
        call    system
        lea     path(%rip), %rdi
        xor     %esi, %esi
        call    site_a
        call    site_b
        mov     $39, %edi
        call    site_c
        lea     path(%rip), %rdi
        xor     %esi, %esi
        call    site_d
        mov     $60, %eax
        mov     $42, %edi
        syscall

        .globl system
        .type system,@function
system:
        xor     %eax, %eax
        ret
        .size system, .-system

        .globl connect
        .type connect,@function
connect:
        xor     %ecx, %ecx
1:      inc     %ecx
        cmp     $3, %ecx
        jne     1b
        xor     %eax, %eax
        ret
        .size connect, .-connect

        .globl listen
        .type listen,@function
listen:
        push    %rbp
        mov     %rsp, %rbp
        xor     %eax, %eax
        pop     %rbp
        ret
        .size listen, .-listen

        .type site_a,@function
site_a:
        mov     $2, %eax
        syscall
        ret
        .size site_a, .-site_a

        .type site_b,@function
site_b:
        mov     $2, %eax
        test    %rdi, %rdi
        jz      3f
2:      syscall
3:      ret
        jmp     2b
        .size site_b, .-site_b

        .type site_c,@function
site_c:
        mov     %rdi, %rax
        syscall
        ret
        .size site_c, .-site_c

        .type site_d,@function
site_d:
        movabs  $0x100000002, %rax
        syscall
        ret
        .size site_d, .-site_d

        .section .rodata
path:   .asciz "/nonexistent-dfpatch-test"
        .data
counter: .quad 0
        .section .note.GNU-stack,"",@progbits
