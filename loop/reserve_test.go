package loop

import "github.com/wsgate/wsgate/loop/looptest"

// reserveAddr: see looptest.ReserveAddr.
var reserveAddr = looptest.ReserveAddr

// ReserveAddr is reserveAddr for the external tests (package loop_test).
var ReserveAddr = looptest.ReserveAddr
