module github.com/wsgate/wsgate

go 1.26.8

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	github.com/VictoriaMetrics/metrics v1.35.1
	github.com/cloudwego/netpoll v0.7.2
	github.com/gorilla/websocket v1.5.3
	github.com/spf13/pflag v1.0.10
	github.com/valyala/bytebufferpool v1.0.0
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/bytedance/gopkg v0.1.1 // indirect
	github.com/cloudwego/gopkg v0.1.4 // indirect
	github.com/coder/websocket v1.8.15 // indirect
	github.com/valyala/fastrand v1.1.0 // indirect
	github.com/valyala/histogram v1.2.0 // indirect
	golang.org/x/net v0.62.0 // indirect
)

replace github.com/cloudwego/netpoll => ./third_party/netpoll
