package limit_test

import (
	"testing"

	"github.com/wsgate/wsgate/loop/limit"
)

func TestParseRateLimit(t *testing.T) {
	good := map[string]limit.RateLimit{
		"/login=5/s":                   {Prefix: "/login", Rate: 5, Burst: 5},
		"api.test/token=0.5/s,burst=3": {Host: "api.test", Prefix: "/token", Rate: 0.5, Burst: 3},
		"/socket.io=120/m":             {Prefix: "/socket.io", Rate: 2, Burst: 2},
	}
	for in, want := range good {
		got, err := limit.ParseRateLimit(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/login", "/login=5", "/login=0/s", "/login=-1/s", "/login=5/h", "login=5/s", "/login=5/s,burst=0", "/login=5/s,burst=x", "a:80/x=1/s", "/a=b=1/s", "/%6cogin=1/s", "/x/../login=1/s"} {
		if _, err := limit.ParseRateLimit(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestParseAllowedOrigin(t *testing.T) {
	for _, in := range []string{"", "/app", "/app=", "/app=app.example.com", "/app=https://a.example/path", "app=https://a.example", "/app=https://"} {
		if _, err := limit.ParseAllowedOrigin(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	ao, err := limit.ParseAllowedOrigin("Example.COM/chat/=HTTPS://App.Example.com:8443")
	if err != nil || ao != (limit.AllowedOrigin{Host: "example.com", Prefix: "/chat", Origin: "https://app.example.com:8443"}) {
		t.Fatalf("%+v %v", ao, err)
	}
}
