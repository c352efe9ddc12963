/* A `syscall` whose number, as the code before it sets it, is getpid's, but
 * which is also jumped to (through a register, which no static analysis
 * follows) with execve's. Its trampoline must not trust the number it was
 * planned for unless that number is set inside the trampoline: here the
 * `mov` is outside the window (the `nop` and what follows make room), so
 * the trampoline asks. Exits with execve's result (0 when /bin/true ran: it
 * replaces this program; 255 when refused: -1 & 0xff). Built with
 * `cc -nostdlib -static`. */
        .text
        .globl _start
_start:
        lea     .Lsite(%rip), %rbx
        lea     path(%rip), %rdi
        lea     argv(%rip), %rsi
        mov     %rdi, (%rsi)
        xor     %edx, %edx
        mov     $59, %eax           /* execve */
        jmp     *%rbx
.Lgetpid:
        mov     $39, %eax           /* getpid, as the code before the site says */
        nop
.Lsite:
        syscall
        mov     %rax, %rdi
        mov     $60, %eax           /* exit */
        syscall
        .data
path:   .asciz "/bin/true"
argv:   .quad 0, 0
        .section .note.GNU-stack,"",@progbits
