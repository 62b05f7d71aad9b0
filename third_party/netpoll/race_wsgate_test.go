// wsgate: tests that only fail under the race detector (WSGATE.md) ask this.

//go:build race
// +build race

package netpoll

const raceBuild = true
