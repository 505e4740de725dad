// Package gofw runs applications built on go-zero and on kratos, with dtm's Go SDK
// (github.com/dtm-labs/client) and dtm's driver for each framework, against a running dtm-host
// registered in etcd (tests/go_frameworks.rs starts etcd and dtm-host and runs them):
//
//	TestGoZero  a go-zero zrpc service registered in etcd by go-zero; dtm-host found through
//	            etcd://…/dtmservice; branches etcd://…/bank.rpc/busi.Bank/<Method>
//	TestKratos  a kratos gRPC service registered in etcd by kratos' etcd registry; dtm-host
//	            found through discovery:///dtmservice; branches discovery:///bank/busi.Bank/<Method>
//
// Each runs the business service (bank_test.go) as a process of its own (this binary again,
// TestServeGoZero or TestServeKratos), stops it with SIGTERM and starts it again on the same
// port while transactions are pending. The environment names the rest:
//
//	GOFW_ETCD       etcd's client address, 127.0.0.1:2379 (required)
//	GOFW_DTM_HTTP   dtm-host's HTTP API, for its query API: http://127.0.0.1:36789/api/dtmsvr (required)
//	GOFW_BANK_PORT  the port of the business service, kept across its restart (required)
//	GOFW_DATA       a directory for the service's ledger and output (required)
//	GOFW_SERVE      set only in the service processes the tests start
package gofw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/logger"
	"github.com/dtm-labs/client/dtmgrpc"
	"github.com/zeromicro/go-zero/core/logx"
	"google.golang.org/grpc"
)

var (
	etcdAddr string
	dtmHTTP  string
	bankPort string
	dataDir  string
)

func TestMain(m *testing.M) {
	etcdAddr = os.Getenv("GOFW_ETCD")
	dtmHTTP = os.Getenv("GOFW_DTM_HTTP")
	bankPort = os.Getenv("GOFW_BANK_PORT")
	dataDir = os.Getenv("GOFW_DATA")
	if etcdAddr == "" || dtmHTTP == "" || bankPort == "" || dataDir == "" {
		fmt.Println("GOFW_ETCD, GOFW_DTM_HTTP, GOFW_BANK_PORT and GOFW_DATA must be set (see main_test.go)")
		os.Exit(2)
	}
	logger.InitLog("error")
	logx.DisableStat()
	os.Exit(m.Run())
}

// bankAddr is where the business service listens, before and after its restart.
func bankAddr() string {
	return "127.0.0.1:" + bankPort
}

// serving skips a TestServe* test unless this process was started to serve.
func serving(t *testing.T) {
	if os.Getenv("GOFW_SERVE") == "" {
		t.Skip("a business service process, started by the other tests")
	}
}

// service is the business service's process.
type service struct {
	t    *testing.T
	test string
	cmd  *exec.Cmd
	log  string
}

// startService runs test (TestServeGoZero, TestServeKratos) of this binary as the business
// service, its output appended to a log in GOFW_DATA.
func startService(t *testing.T, test string) *service {
	s := &service{t: t, test: test, log: filepath.Join(dataDir, test+".log")}
	out, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd = exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.v")
	s.cmd.Env = append(os.Environ(), "GOFW_SERVE=1")
	s.cmd.Stdout = out
	s.cmd.Stderr = out
	// Killed with this process even when it ends without its cleanups (a -test.timeout panic).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd != nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	})
	return s
}

// stop sends SIGTERM, as a deployment stops a service, and waits for the process to end.
func (s *service) stop() {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		s.cmd = nil
		if err != nil {
			s.t.Fatalf("%s ended with %v:\n%s", s.test, err, s.output())
		}
	case <-time.After(15 * time.Second):
		s.t.Fatalf("%s did not stop within 15 s of SIGTERM:\n%s", s.test, s.output())
	}
}

func (s *service) output() string {
	data, _ := os.ReadFile(s.log)
	return string(data)
}

// app is one framework's application: how it reaches dtm-host and the bank.
type app struct {
	t *testing.T
	// dtm is the coordinator's address as the SDK dials it, through the framework's resolver.
	dtm string
	// url is the branch URL of busi.Bank's method, resolved by dtm-host's driver.
	url func(method string) string
	// bank is the framework's own client of the business service.
	bank grpc.ClientConnInterface
	// serve is the TestServe* test that runs the business service.
	serve   string
	service *service
}

// run is the scenario both frameworks go through.
func (a *app) run() {
	a.service = startService(a.t, a.serve)
	a.waitBalances(map[string]int64{"alice": 100, "bob": 0, frozen: 0})

	// A saga moving 30 from alice to bob.
	gid := dtmgrpc.MustGenGid(a.dtm)
	saga := a.transfer(gid, "alice", "bob", 30)
	saga.WaitResult = true
	if err := saga.Submit(); err != nil {
		a.t.Fatalf("saga %s: %v\n%s", gid, err, a.service.output())
	}
	a.expectStatus(gid, "succeed")
	a.expectBalances(map[string]int64{"alice": 70, "bob": 30, frozen: 0})

	// A saga paying into the frozen account: it fails and the money goes back to alice.
	failing := dtmgrpc.MustGenGid(a.dtm)
	saga = a.transfer(failing, "alice", frozen, 20)
	saga.WaitResult = true
	if err := saga.Submit(); !errors.Is(dtmgrpc.GrpcError2DtmError(err), dtmcli.ErrFailure) {
		a.t.Fatalf("saga %s into the frozen account: %v, not FAILURE", failing, err)
	}
	a.waitStatus(failing, "failed", 10*time.Second)
	a.expectBalances(map[string]int64{"alice": 70, "bob": 30, frozen: 0})

	// A msg moving 10 from alice to bob.
	msgGid := dtmgrpc.MustGenGid(a.dtm)
	if err := a.msg(msgGid, "alice", "bob", 10).Submit(); err != nil {
		a.t.Fatalf("msg %s: %v", msgGid, err)
	}
	a.waitStatus(msgGid, "succeed", 10*time.Second)
	a.expectBalances(map[string]int64{"alice": 60, "bob": 40, frozen: 0})

	// The service goes down; a saga and a msg submitted meanwhile wait for it.
	a.service.stop()
	sagaGid, msgGid := dtmgrpc.MustGenGid(a.dtm), dtmgrpc.MustGenGid(a.dtm)
	saga = a.transfer(sagaGid, "alice", "bob", 15)
	saga.RetryInterval = 1
	if err := saga.Submit(); err != nil {
		a.t.Fatalf("saga %s: %v", sagaGid, err)
	}
	msg := a.msg(msgGid, "alice", "bob", 5)
	msg.RetryInterval = 1
	if err := msg.Submit(); err != nil {
		a.t.Fatalf("msg %s: %v", msgGid, err)
	}
	time.Sleep(2 * time.Second)
	for _, gid := range []string{sagaGid, msgGid} {
		q := a.query(gid)
		for _, b := range q.Branches {
			if q.Transaction.Status != "submitted" || b.Status != "prepared" {
				a.t.Fatalf("%s went on while the service was down: %+v", gid, q)
			}
		}
	}

	// Back on the same port: dtm-host's retries reach it and both finish.
	a.service = startService(a.t, a.serve)
	a.waitStatus(sagaGid, "succeed", 60*time.Second)
	a.waitStatus(msgGid, "succeed", 60*time.Second)
	a.expectBalances(map[string]int64{"alice": 40, "bob": 60, frozen: 0})
	a.service.stop()
}

// transfer is a saga moving amount from one account to another over the bank's branch URLs.
func (a *app) transfer(gid, from, to string, amount int64) *dtmgrpc.SagaGrpc {
	return dtmgrpc.NewSagaGrpc(a.dtm, gid).
		Add(a.url("TransOut"), a.url("TransOutRevert"), transferPb(from, amount)).
		Add(a.url("TransIn"), a.url("TransInRevert"), transferPb(to, amount))
}

// msg is a msg moving amount from one account to another.
func (a *app) msg(gid, from, to string, amount int64) *dtmgrpc.MsgGrpc {
	return dtmgrpc.NewMsgGrpc(a.dtm, gid).
		Add(a.url("TransOut"), transferPb(from, amount)).
		Add(a.url("TransIn"), transferPb(to, amount))
}

// waitBalances polls the bank through the framework's client until it answers want (the
// service has started and registered, and the client has discovered it).
func (a *app) waitBalances(want map[string]int64) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got, err := balancesOf(ctx, a.bank)
		cancel()
		if err == nil && reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("the bank's balances are %v (%v), not %v\n%s", got, err, want, a.service.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// expectBalances checks the bank's balances are want, once the framework's client reaches the
// bank (after a restart it may still be waiting to reconnect).
func (a *app) expectBalances(want map[string]int64) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got, err := balancesOf(ctx, a.bank)
		cancel()
		if err == nil && !reflect.DeepEqual(got, want) {
			a.t.Fatalf("the bank's balances are %v, not %v", got, want)
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("the bank's balances: %v\n%s", err, a.service.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// queried is the part of dtm-host's query answer the tests read.
type queried struct {
	Transaction struct {
		Status string `json:"status"`
	} `json:"transaction"`
	Branches []struct {
		Op     string `json:"op"`
		URL    string `json:"url"`
		Status string `json:"status"`
	} `json:"branches"`
}

// query asks dtm-host's query API about gid.
func (a *app) query(gid string) queried {
	var q queried
	resp, err := http.Get(dtmHTTP + "/query?gid=" + gid)
	if err == nil {
		defer resp.Body.Close()
		err = json.NewDecoder(resp.Body).Decode(&q)
	}
	if err != nil {
		a.t.Fatalf("query %s: %v", gid, err)
	}
	return q
}

func (a *app) expectStatus(gid, want string) {
	if q := a.query(gid); q.Transaction.Status != want {
		a.t.Fatalf("%s is %+v, not %s", gid, q, want)
	}
}

func (a *app) waitStatus(gid, want string, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		q := a.query(gid)
		if q.Transaction.Status == want {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s is %+v, not %s after %v\nservice output:\n%s", gid, q, want, within, a.service.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
