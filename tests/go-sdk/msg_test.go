package gosdk

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/dtmimp"
	"github.com/dtm-labs/client/dtmgrpc"
	"github.com/dtm-labs/client/dtmgrpc/dtmgimp"
	"github.com/dtm-labs/client/dtmgrpc/dtmgpb"
)

// transOutLocal is a msg's local transaction: take the amount from `from` in a SQL store.
func transOutLocal(store string, from, amount int64) dtmcli.BarrierBusiFunc {
	return func(tx *sql.Tx) error {
		_, dbType := storeDB(store)
		return adjust(tx, dbType, from, -amount)
	}
}

// quickMsg makes the coordinator check a prepared msg back after a second, not after dtm's
// default 35 s.
func quickMsg(msg *dtmimp.TransBase) {
	msg.TimeoutToFail = 1
	msg.RetryInterval = 1
}

func TestMsgHTTPPrepareSubmit(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	msg := dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30, To: to, Store: "mysql"})
	noErr(t, "prepare", msg.Prepare(busiHTTP+"/QueryPrepared?store=mysql"))
	equal(t, "status after prepare", query(t, gid).Transaction.Status, "prepared")
	noErr(t, "submit", msg.Submit())
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "branches", branchStatuses(trans), []string{"01/action:succeed"})
	wantBalances(t, "mysql", from, to, 10000, 10030)
}

func TestMsgGrpcPrepareSubmit(t *testing.T) {
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	msg := dtmgrpc.NewMsgGrpc(dtmGrpc, gid).Add(grpcURL("TransIn"), pb(&Req{Amount: 30}))
	noErr(t, "prepare", msg.Prepare(grpcURL("QueryPreparedMysql")))
	noErr(t, "submit", msg.Submit())
	waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransIn"})
}

func TestMsgHTTPDoAndSubmitDB(t *testing.T) {
	for _, store := range []string{"mysql", "postgres"} {
		t.Run(store, func(t *testing.T) {
			needStore(t, store)
			db, _ := storeDB(store)
			from, to := newUsers(t)
			gid := newGid(t)
			msg := dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30, To: to, Store: store})
			defer useDBType(sqlType(store))()
			noErr(t, "DoAndSubmitDB", msg.DoAndSubmitDB(busiHTTP+"/QueryPrepared?store="+store, db, transOutLocal(store, from, 30)))
			waitStatus(t, gid, "succeed", 10*time.Second)
			wantBalances(t, store, from, to, 9970, 10030)
			equal(t, "msg barrier rows", barrierRows(t, store, gid, "00"), "msg/msg")
		})
	}
}

// The local transaction refuses (FAILURE): the msg is aborted and its branches never run.
func TestMsgHTTPDoAndSubmitDBFailure(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := newGid(t)
	msg := dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30, To: to, Store: "mysql"})
	err := msg.DoAndSubmitDB(busiHTTP+"/QueryPrepared?store=mysql", mysqlDB, transOutLocal("mysql", from, 1000000))
	if !errors.Is(err, dtmcli.ErrFailure) {
		t.Fatalf("DoAndSubmitDB returned %v, not the local transaction's FAILURE", err)
	}
	waitStatus(t, gid, "failed", 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	equalList(t, "calls", namesOf(gid), []string{})
	wantBalances(t, "mysql", from, to, 10000, 10000)
}

// The app commits its local transaction and dies before Submit: the coordinator's check-back
// finds the barrier row and the msg goes on.
func TestMsgHTTPCrashAfterCommit(t *testing.T) {
	for _, store := range []string{"mysql", "postgres"} {
		t.Run(store, func(t *testing.T) {
			needStore(t, store)
			db, _ := storeDB(store)
			from, to := newUsers(t)
			gid := newGid(t)
			msg := dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30, To: to, Store: store})
			quickMsg(&msg.TransBase)
			noErr(t, "prepare", msg.Prepare(busiHTTP+"/QueryPrepared?store="+store))
			bb, err := dtmcli.BarrierFrom("msg", gid, dtmimp.MsgDoBranch0, dtmimp.MsgDoOp)
			noErr(t, "barrier", err)
			bb.DBType = sqlType(store)
			noErr(t, "local transaction", bb.CallWithDB(db, transOutLocal(store, from, 30)))
			// no Submit: the app is gone
			waitStatus(t, gid, "succeed", 15*time.Second)
			equalList(t, "calls", namesOf(gid), []string{"QueryPrepared", "TransIn"})
			wantBalances(t, store, from, to, 9970, 10030)
		})
	}
}

// The app dies after Prepare, before its local transaction: the check-back marks the msg
// rolled back, the msg fails, and a late local transaction is refused as a duplicate.
func TestMsgHTTPCrashBeforeCommit(t *testing.T) {
	for _, store := range []string{"mysql", "postgres"} {
		t.Run(store, func(t *testing.T) {
			needStore(t, store)
			db, _ := storeDB(store)
			from, to := newUsers(t)
			gid := newGid(t)
			msg := dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30, To: to, Store: store})
			quickMsg(&msg.TransBase)
			noErr(t, "prepare", msg.Prepare(busiHTTP+"/QueryPrepared?store="+store))
			waitStatus(t, gid, "failed", 15*time.Second)
			equalList(t, "calls", namesOf(gid), []string{"QueryPrepared"})
			equal(t, "msg barrier rows", barrierRows(t, store, gid, "00"), "msg/rollback")
			bb, _ := dtmcli.BarrierFrom("msg", gid, dtmimp.MsgDoBranch0, dtmimp.MsgDoOp)
			bb.DBType = sqlType(store)
			err := bb.CallWithDB(db, transOutLocal(store, from, 30))
			if !errors.Is(err, dtmcli.ErrDuplicated) {
				t.Fatalf("the late local transaction returned %v, not DUPLICATED", err)
			}
			wantBalances(t, store, from, to, 10000, 10000)
		})
	}
}

func TestMsgGrpcDoAndSubmitDB(t *testing.T) {
	needStore(t, "postgres")
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	msg := dtmgrpc.NewMsgGrpc(dtmGrpc, gid).Add(grpcURL("TransIn"), pb(&Req{Amount: 30, To: to, Store: "postgres"}))
	defer useDBType(dtmcli.DBTypePostgres)()
	noErr(t, "DoAndSubmitDB", msg.DoAndSubmitDB(grpcURL("QueryPreparedPostgres"), pgDB, transOutLocal("postgres", from, 30)))
	waitStatus(t, gid, "succeed", 10*time.Second)
	wantBalances(t, "postgres", from, to, 9970, 10030)
}

func TestMsgGrpcCrashAfterCommit(t *testing.T) {
	needStore(t, "mysql")
	from, to := newUsers(t)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	msg := dtmgrpc.NewMsgGrpc(dtmGrpc, gid).Add(grpcURL("TransIn"), pb(&Req{Amount: 30, To: to, Store: "mysql"}))
	quickMsg(&msg.TransBase)
	noErr(t, "prepare", msg.Prepare(grpcURL("QueryPreparedMysql")))
	bb, _ := dtmcli.BarrierFrom("msg", gid, dtmimp.MsgDoBranch0, dtmimp.MsgDoOp)
	noErr(t, "local transaction", bb.CallWithDB(mysqlDB, transOutLocal("mysql", from, 30)))
	waitStatus(t, gid, "succeed", 15*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"QueryPrepared", "TransIn"})
	wantBalances(t, "mysql", from, to, 9970, 10030)
}

func TestMsgGrpcCrashBeforeCommit(t *testing.T) {
	needStore(t, "mysql")
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	msg := dtmgrpc.NewMsgGrpc(dtmGrpc, gid).Add(grpcURL("TransIn"), pb(&Req{Amount: 30}))
	quickMsg(&msg.TransBase)
	noErr(t, "prepare", msg.Prepare(grpcURL("QueryPreparedMysql")))
	waitStatus(t, gid, "failed", 15*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"QueryPrepared"})
}

func TestMsgRedisDoAndSubmit(t *testing.T) {
	needStore(t, "redis")
	from, to := newUsers(t)
	gid := newGid(t)
	msg := dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30, To: to, Store: "redis"})
	err := msg.DoAndSubmit(busiHTTP+"/QueryPrepared?store=redis", func(bb *dtmcli.BranchBarrier) error {
		return bb.RedisCheckAdjustAmount(rdb, redisKey(from), -30, 86400)
	})
	noErr(t, "DoAndSubmit", err)
	waitStatus(t, gid, "succeed", 10*time.Second)
	wantBalances(t, "redis", from, to, 9970, 10030)

	// prepared, then the app is gone: the check-back finds nothing and the msg fails
	gid = newGid(t)
	msg = dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30, To: to, Store: "redis"})
	quickMsg(&msg.TransBase)
	noErr(t, "prepare", msg.Prepare(busiHTTP+"/QueryPrepared?store=redis"))
	waitStatus(t, gid, "failed", 15*time.Second)
	wantBalances(t, "redis", from, to, 9970, 10030)
}

// msg with a delay: its branch is called no sooner than the delay after Submit.
func TestMsgHTTPDelay(t *testing.T) {
	gid := newGid(t)
	msg := dtmcli.NewMsg(dtmHTTP, gid).Add(busiHTTP+"/TransIn", &Req{Amount: 30}).SetDelay(2)
	submitted := time.Now()
	noErr(t, "submit", msg.Submit())
	waitStatus(t, gid, "succeed", 15*time.Second)
	c := callsOf(gid)
	if len(c) != 1 || c[0].Start.Sub(submitted) < 1800*time.Millisecond {
		t.Fatalf("a msg delayed by 2 s was called %v after Submit (calls %v)", c[0].Start.Sub(submitted), namesOf(gid))
	}
}

// Topics: subscribers registered through the coordinator's topic API get the msg.
func TestMsgHTTPTopic(t *testing.T) {
	topic := fmt.Sprintf("%s_topic_http_%d", scope, time.Now().UnixNano())
	for _, sub := range []string{"TransOut", "TransIn"} {
		resp, err := dtmcli.GetRestyClient().R().SetQueryParams(map[string]string{
			"topic": topic, "url": busiHTTP + "/" + sub, "remark": "go sdk " + sub,
		}).Get(dtmHTTP + "/subscribe")
		noErr(t, "subscribe", err)
		equal(t, "subscribe answer "+resp.String(), resp.StatusCode(), 200)
	}
	gid := newGid(t)
	noErr(t, "submit", dtmcli.NewMsg(dtmHTTP, gid).AddTopic(topic, &Req{Amount: 30}).Submit())
	trans := waitStatus(t, gid, "succeed", 10*time.Second)
	// one branch per subscriber, numbered as dtm numbers them
	equalList(t, "branches", branchStatuses(trans), []string{"01-01/action:succeed", "01-02/action:succeed"})
	equal(t, "calls", len(callsOf(gid)), 2)

	resp, err := dtmcli.GetRestyClient().R().SetQueryParams(map[string]string{
		"topic": topic, "url": busiHTTP + "/TransOut"}).Get(dtmHTTP + "/unsubscribe")
	noErr(t, "unsubscribe", err)
	equal(t, "unsubscribe answer "+resp.String(), resp.StatusCode(), 200)
	gid = newGid(t)
	noErr(t, "submit", dtmcli.NewMsg(dtmHTTP, gid).AddTopic(topic, &Req{Amount: 30}).Submit())
	waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "calls after unsubscribe", namesOf(gid), []string{"TransIn"})

	resp, err = dtmcli.GetRestyClient().R().Delete(dtmHTTP + "/topic/" + url.PathEscape(topic))
	noErr(t, "delete topic", err)
	equal(t, "delete answer "+resp.String(), resp.StatusCode(), 200)
	err = dtmcli.NewMsg(dtmHTTP, newGid(t)).AddTopic(topic, &Req{Amount: 30}).Submit()
	if err == nil {
		t.Fatalf("a msg to a deleted topic was accepted")
	}
}

func TestMsgGrpcTopic(t *testing.T) {
	topic := fmt.Sprintf("%s_topic_grpc_%d", scope, time.Now().UnixNano())
	client := dtmgimp.MustGetDtmClient(dtmGrpc)
	_, err := client.Subscribe(context.Background(), &dtmgpb.DtmTopicRequest{
		Topic: topic, URL: grpcURL("TransIn"), Remark: "go sdk"})
	noErr(t, "subscribe", err)
	gid := dtmgrpc.MustGenGid(dtmGrpc)
	noErr(t, "submit", dtmgrpc.NewMsgGrpc(dtmGrpc, gid).AddTopic(topic, pb(&Req{Amount: 30})).Submit())
	waitStatus(t, gid, "succeed", 10*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransIn"})
	_, err = client.DeleteTopic(context.Background(), &dtmgpb.DtmTopicRequest{Topic: topic})
	noErr(t, "delete topic", err)
}

// useDBType makes dbType the SDK's database type for the barriers it makes itself (as in
// DoAndSubmitDB); the returned func sets it back to MySQL.
func useDBType(dbType string) func() {
	dtmcli.SetCurrentDBType(dbType)
	return func() { dtmcli.SetCurrentDBType(dtmcli.DBTypeMysql) }
}

func sqlType(store string) string {
	_, t := storeDB(store)
	return t
}

// barrierRows lists "op/reason" of the barrier rows of gid's branch, in insertion order.
func barrierRows(t *testing.T, store, gid, branchID string) string {
	t.Helper()
	db, dbType := storeDB(store)
	q := "SELECT op, reason FROM " + scope + ".barrier WHERE gid = ? AND branch_id = ? ORDER BY id"
	if dbType == dtmcli.DBTypePostgres {
		q = "SELECT op, reason FROM " + scope + ".barrier WHERE gid = $1 AND branch_id = $2 ORDER BY id"
	}
	rows, err := db.Query(q, gid, branchID)
	noErr(t, "barrier rows", err)
	defer rows.Close()
	s := ""
	for rows.Next() {
		var op, reason string
		noErr(t, "barrier row", rows.Scan(&op, &reason))
		if s != "" {
			s += " "
		}
		s += op + "/" + reason
	}
	return s
}
