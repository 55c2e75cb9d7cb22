// SPDX-License-Identifier: GPL-2.0-only
/* The exec target of minerguard's benchmark: a static program that only exits 0, so that an
 * exec's cost is the kernel's (and the agent's hook), small and stable. Copied to
 * /bench/xmrig in the guest for the event storm (a listed name, run in audit mode). */
int main(void)
{
	return 0;
}
